/**
 * Inference folds (methods.md §1.7 (h)): in eval mode a ConvFFN branch runs with its BN folded into
 * the depthwise conv and the block's layer scale folded into fc2. Checked against the plain graph
 * (forced by a no-op hook on every ConvFFN, which turns the folds off), on the micro model with
 * non-trivial BN statistics and layer scales, unfused and reparameterised; the fold follows weight
 * changes and frees its tensors with the model.
 */
import { beforeAll, describe, expect, test } from 'vitest';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { CLIP } from '../../src/base/model/clip.js';
import { reparameterize } from '../../src/base/model/reparameterize.js';
import { ConvFFN } from '../../src/base/layers/conv-ffn.js';
import { heldByFoldCaches } from '../../src/base/nn/fold-cache.js';
import type { HookHandle } from '../../src/base/nn/module.js';
import { microConfig, microTokenRows } from '../micro-config.js';
import { relErr as relErrOf } from './helpers.js';

const tokens = microTokenRows;

/** Random BN statistics and affine, random layer scales: every fold term matters. */
function randomise(model: CLIP): void {
  let seed = 7;
  for (const [name, p] of model.namedParams()) {
    if (p.variable.dtype !== 'float32') continue;
    const n = p.variable.size;
    tf.tidy(() => {
      const r = tf.randomUniform(p.variable.shape, 0, 1, 'float32', seed++);
      if (/running_var$/.test(name)) p.variable.assign(r.mul(1.5).add(0.5));
      else if (/running_mean$|bn\.bias$/.test(name)) p.variable.assign(r.sub(0.5));
      else if (/bn\.weight$/.test(name)) p.variable.assign(r.add(0.5));
      else if (/layer_scale/.test(name) && n > 0) p.variable.assign(r.mul(0.8).add(0.1));
    });
  }
}

function embed(model: CLIP, images: tf.Tensor4D, toks: tf.Tensor2D): Float32Array[] {
  return tf.tidy(() => [model.encodeImage(images).dataSync() as Float32Array, model.encodeText(toks).dataSync() as Float32Array]);
}

function plain(model: CLIP, images: tf.Tensor4D, toks: tf.Tensor2D): Float32Array[] {
  const handles: HookHandle[] = model.namedModules().filter(([, m]) => m instanceof ConvFFN).map(([, m]) => m.registerForwardHook(() => undefined));
  try {
    return embed(model, images, toks);
  } finally {
    for (const h of handles) h.remove();
  }
}

/** max|got − want| / max|want| (the shared helper takes the reference first). */
const relErr = (got: Float32Array, want: Float32Array): number => relErrOf(want, got);

describe('inference folds (ConvFFN BN + layer scale)', () => {
  beforeAll(async () => {
    await initBackend({ quiet: true });
  });

  for (const fused of [false, true]) {
    test(`folded == plain graph (${fused ? 'reparameterised' : 'unfused'}), follows weight changes, frees with the model`, () => {
      const before = tf.memory().numTensors;
      const model = new CLIP(microConfig(), { seed: 5 });
      randomise(model);
      model.eval();
      if (fused) reparameterize(model);
      const images = tf.randomUniform([2, 32, 32, 3], 0, 1, 'float32', 3) as tf.Tensor4D;
      const toks = tokens();
      const ffns = model.namedModules().filter(([, m]) => m instanceof ConvFFN);
      expect(ffns.length).toBeGreaterThanOrEqual(6); // image stages + the attention stage + the two text RepMixer blocks

      const want = plain(model, images, toks);
      const got = embed(model, images, toks);
      // dw weight, dw bias, fc2 weight, fc2 bias per ConvFFN, except the text tower's last block (it runs forwardRows: the EOT row only)
      expect(heldByFoldCaches()).toBe(4 * (ffns.length - 1));
      for (let k = 0; k < 2; k++) expect(relErr(got[k]!, want[k]!)).toBeLessThan(1e-5);
      // the folded graph really ran (and differs from a no-fold rounding only): the hooks were off
      expect(model.hasHooks()).toBe(false);

      // a weight change (as an optimiser step or a checkpoint load) reaches the folded form
      const ls = model.namedParams().find(([n]) => n === 'text_encoder.transformer.0.layer_scale')!;
      tf.tidy(() => ls[1].variable.assign(ls[1].variable.mul(3)));
      const want2 = plain(model, images, toks);
      const got2 = embed(model, images, toks);
      expect(relErr(got2[1]!, want2[1]!)).toBeLessThan(1e-5);
      expect(relErr(got2[1]!, got[1]!)).toBeGreaterThan(1e-3);

      model.dispose();
      expect(heldByFoldCaches()).toBe(0);
      tf.dispose([images, toks]);
      expect(tf.memory().numTensors).toBe(before);
    });
  }
});
