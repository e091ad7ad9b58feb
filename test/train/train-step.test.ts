import { beforeAll, describe, expect, test } from 'vitest';
import * as tf from '../../src/base/tf.js';
import '@tensorflow/tfjs-backend-cpu';
import { initBackend } from '../../src/base/backend/index.js';
import { CLIP } from '../../src/base/model/clip.js';
import { exportStateDict, loadStateDict } from '../../src/base/model/state-dict.js';
import { AdamW } from '../../src/base/train/adamw.js';
import { lossAndGrads, trainStep } from '../../src/base/train/step.js';
import type { StateDict } from '../../src/base/io/tensor-data.js';
import { MICRO_CONTEXT as L, microConfig } from '../micro-config.js';

/**
 * Every block type of mobileclip_tiny at micro widths (test/micro-config.ts): the pure-JS cpu backend is
 * only the reference here, and at tiny size its embedding gradient alone took over a minute.
 */
const cfg = microConfig();
const B = 4;
/** Input side: any multiple of 32 works for MCi. */
const S = cfg.image.imageSize;

function batch(vocab: number): { images: Float32Array; tokens: Int32Array } {
  let s = 12345;
  const rnd = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
  const images = Float32Array.from({ length: B * S * S * 3 }, rnd);
  const tokens = new Int32Array(B * L);
  for (let b = 0; b < B; b++) {
    const len = 5 + b * 3;
    tokens[b * L] = vocab - 2;
    for (let j = 1; j < len; j++) tokens[b * L + j] = 1 + Math.floor(rnd() * (vocab - 3));
    tokens[b * L + len] = vocab - 1;
  }
  return { images, tokens };
}

/** Loss, named gradients and the parameters after one AdamW step, on the current backend. */
function runStep(model: CLIP, start: StateDict, data: { images: Float32Array; tokens: Int32Array }) {
  loadStateDict(model, start, 'start');
  model.train();
  const images = tf.tensor4d(data.images, [B, S, S, 3]);
  const tokens = tf.tensor2d(data.tokens, [B, L], 'int32');
  const { loss, losses, grads } = lossAndGrads(model, { images, gtTokens: tokens });
  // The default loss list is the contrastive term alone: the total is that term, unweighted.
  expect(Object.keys(losses)).toEqual(['contrastive']);
  expect(losses.contrastive.dataSync()[0]).toBe(loss.dataSync()[0]);
  const names = new Map(model.namedParams().map(([n, p]) => [p.variable.name, n]));
  const g = new Map<string, Float32Array>();
  for (const [k, v] of Object.entries(grads)) g.set(names.get(k)!, v.dataSync() as Float32Array);
  const l = loss.dataSync()[0];
  const opt = new AdamW(model, { lr: 1e-3, weightDecay: 0.1 });
  opt.apply(grads);
  // Parameters after the step, in the TF.js layout of the gradients.
  const after = new Map<string, Float32Array>();
  for (const [n, p] of model.namedParams()) if (p.trainable) after.set(n, p.variable.dataSync() as Float32Array);
  tf.dispose([loss, ...Object.values(losses), images, tokens, ...Object.values(grads)]);
  opt.dispose();
  return { loss: l, grads: g, after };
}

describe('training step: wasm vs cpu, no tensor leaks', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true, gradients: true });
  });

  test('mobileclip_tiny (micro widths): same loss, gradients and AdamW update on wasm and cpu (≤ 1e-4)', async () => {
    const model = new CLIP(cfg, { seed: 7 });
    // Non-trivial layer scales so every branch contributes to the gradients.
    for (const [n, p] of model.namedParams()) if (/layer_scale/.test(n)) p.variable.assign(tf.fill(p.variable.shape, 0.3));
    const start = exportStateDict(model);
    const data = batch(cfg.text.vocabSize);
    await tf.setBackend('cpu');
    const ref = runStep(model, start, data);
    await tf.setBackend('wasm');
    const got = runStep(model, start, data);
    expect(Number.isFinite(ref.loss)).toBe(true);
    expect(Math.abs(ref.loss - got.loss) / Math.abs(ref.loss)).toBeLessThanOrEqual(1e-4);
    expect(ref.grads.size).toBe(model.namedParams().filter(([, p]) => p.trainable).length);
    // Gradients are compared as one vector (max|Δ| / max|ref| over all parameters, ≤ 1e-4) and per
    // tensor (≤ 1e-3 of max(its own max, 1% of the largest gradient)). The per-tensor bound is looser
    // because conv weights that feed a train-mode BatchNorm are nearly scale-invariant: their gradient
    // is a heavily cancelling sum, near 0, whose float32 rounding differs between backends.
    let gmax = 0;
    for (const g of ref.grads.values()) for (const v of g) gmax = Math.max(gmax, Math.abs(v));
    let dmax = 0;
    let worst = 0;
    for (const [name, g] of ref.grads) {
      const o = got.grads.get(name)!;
      let md = 0;
      let mr = 0;
      for (let i = 0; i < g.length; i++) {
        md = Math.max(md, Math.abs(g[i] - o[i]));
        mr = Math.max(mr, Math.abs(g[i]));
      }
      dmax = Math.max(dmax, md);
      const e = md / Math.max(mr, 1e-2 * gmax);
      worst = Math.max(worst, e);
      expect(e, `grad ${name} (max|ref| ${mr.toExponential(2)})`).toBeLessThanOrEqual(1e-3);
    }
    expect(dmax / gmax, 'all gradients').toBeLessThanOrEqual(1e-4);
    let compared = 0;
    for (const [name, a] of ref.after) {
      // Adam's first step moves every entry by ≈ ±lr·sign(g) (+ decay), whatever |g|: entries whose
      // gradient is rounding noise may flip sign between backends, so the update is compared where the
      // two gradients agree to 1e-3 relative (then the updates must agree to float rounding).
      const g = ref.grads.get(name);
      const g2 = got.grads.get(name);
      if (!g || !g2) continue;
      const b = got.after.get(name)!;
      let md = 0;
      let n = 0;
      for (let i = 0; i < a.length; i++) {
        if (Math.abs(g[i] - g2[i]) > 1e-3 * Math.abs(g[i])) continue;
        n++;
        md = Math.max(md, Math.abs(a[i] - b[i]));
      }
      compared += n;
      expect(md, `param ${name}`).toBeLessThanOrEqual(1e-6);
    }
    expect(compared).toBeGreaterThan(0.9 * model.numParams());
    console.log(`train step: loss cpu ${ref.loss} wasm ${got.loss}; gradients ${(dmax / gmax).toExponential(2)} overall, worst tensor ${worst.toExponential(2)}`);
    model.dispose();
  });

  test('10 AdamW steps leave the tensor count unchanged and reduce the loss', () => {
    const model = new CLIP(cfg, { seed: 3 }).train();
    const opt = new AdamW(model, { lr: 2e-3, weightDecay: 0.1 });
    const data = batch(cfg.text.vocabSize);
    const images = tf.tensor4d(data.images, [B, S, S, 3]);
    const tokens = tf.tensor2d(data.tokens, [B, L], 'int32');
    trainStep(model, opt, { images, gtTokens: tokens }, { gradClip: 1 });
    const before = tf.memory().numTensors;
    const losses: number[] = [];
    for (let i = 0; i < 10; i++) losses.push(trainStep(model, opt, { images, gtTokens: tokens }, { gradClip: 1 }).loss);
    expect(tf.memory().numTensors).toBe(before);
    expect(losses[9]).toBeLessThan(losses[0]);
    tf.dispose([images, tokens]);
    opt.dispose();
    model.dispose();
  });
});
