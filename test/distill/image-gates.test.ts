/**
 * `ImageGates`: TinyCLIP gates on an MCi tower, stage channels parameterised so that the PatchEmbed coupling
 * holds by construction (stage 0 per channel, later stages per slot). With random ln α: the deterministic
 * masks break no coupling rule, the gated model in eval mode equals the pruned one, `prunedSize` is the
 * pruned model's prunable size for every count offset, N₀ = E[N] with the gates open, samples get gradients.
 */
import { beforeAll, describe, expect, test } from 'vitest';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { CLIP } from '../../src/base/model/clip.js';
import { mciStages } from '../../src/base/model/configs.js';
import { ImageGates, imagePrunableSize } from '../../src/distill/masks/image-gates.js';
import { imageCoupling } from '../../src/distill/masks/prune-image.js';
import { microConfig } from '../micro-config.js';
import { relErr } from '../model/helpers.js';

const embed = (m: CLIP, x: tf.Tensor4D): Float32Array => tf.tidy(() => m.encodeImage(x).dataSync() as Float32Array);

/** ln α spread over [−3, 5] from a seed (some gates closed, some open, some in between). */
function scramble(gates: ImageGates, seed: number): void {
  let s = seed;
  const rnd = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
  for (const v of gates.logAlphas) tf.tidy(() => v.assign(tf.tensor(Array.from({ length: v.size }, () => -3 + 8 * rnd()), v.shape)));
}

describe('ImageGates', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true });
  });

  test('random ln α: coupling holds, masked (eval) == pruned, prunedSize == the pruned size at several offsets; no leaks', () => {
    const before = tf.memory().numTensors;
    const cfg = microConfig();
    const model = new CLIP(cfg, { seed: 5 });
    model.eval();
    const x = tf.randomUniform([2, cfg.image.imageSize, cfg.image.imageSize, 3], 0, 1, 'float32', 3) as tf.Tensor4D;
    const gates = new ImageGates(model, { seed: 1 });
    expect(gates.channels).not.toBeNull();
    const n0 = imagePrunableSize(model);
    expect(tf.tidy(() => gates.expectedSize().full)).toBe(n0);
    scramble(gates, 11);
    const widths = cfg.image.kind === 'mci' ? mciStages(cfg.image).map((s) => s.width) : [];
    for (const shift of [-2, 0, 1.5]) {
      const v = gates.deterministic(shift);
      expect(imageCoupling(v.stages.map((s) => s.channels), widths)).toEqual([]);
      const pruned = gates.prune(model, shift);
      expect(imagePrunableSize(pruned)).toBe(gates.prunedSize(shift));
      expect(imagePrunableSize(pruned)).toBeLessThan(n0);
      if (shift === 0) {
        gates.install();
        const masked = embed(model, x);
        gates.remove();
        expect(relErr(masked, embed(pruned, x))).toBeLessThan(1e-5);
      }
      pruned.dispose();
    }
    // the size is non-decreasing in the offset (calibration bisects on it)
    const sizes = [-6, -3, 0, 3, 6].map((d) => gates.prunedSize(d));
    for (let i = 1; i < sizes.length; i++) expect(sizes[i]).toBeGreaterThanOrEqual(sizes[i - 1]);
    gates.dispose();
    model.dispose();
    x.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  test('train mode: a sample per forward, gradients reach every ln α', () => {
    const cfg = microConfig();
    const model = new CLIP(cfg, { seed: 5 });
    model.train(true);
    const gates = new ImageGates(model, { seed: 2, initLogAlpha: 0.5 });
    gates.install();
    const x = tf.randomUniform([2, cfg.image.imageSize, cfg.image.imageSize, 3], 0, 1, 'float32', 4) as tf.Tensor4D;
    const { grads } = tf.variableGrads(() => model.encodeImage(x).square().sum() as tf.Scalar, gates.logAlphas);
    for (const v of gates.logAlphas) {
      const g = grads[v.name].dataSync();
      expect(Array.from(g).every(Number.isFinite)).toBe(true);
      expect(Array.from(g).some((e) => e !== 0)).toBe(true);
    }
    tf.dispose(Object.values(grads));
    x.dispose();
    gates.dispose();
    model.dispose();
  });
});
