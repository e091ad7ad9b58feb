/**
 * What the mask tests of the three towers (text-masks, image-masks, vit-masks) share: trainable mask
 * variables made from mask values, the check that masks (or gate logits) receive gradients, and the check
 * that removing a mask set restores every plain LayerNorm, and the masked == pruned check of image gates.
 */
import { expect } from 'vitest';
import * as tf from '../../src/base/tf.js';
import type { CLIP } from '../../src/base/model/clip.js';
import { LayerNorm } from '../../src/base/layers/layer-norm.js';
import { MaskedLayerNorm } from '../../src/distill/masks/masked-layer-norm.js';
import { relErr } from '../model/helpers.js';

/** A factory of trainable 1-D mask variables (`make(values)`, undefined passes through) and the variables made. */
export function maskVariables(): { make: (a: Float32Array | undefined) => tf.Variable<tf.Rank.R1> | undefined; vars: tf.Variable[] } {
  const vars: tf.Variable[] = [];
  const make = (a: Float32Array | undefined): tf.Variable<tf.Rank.R1> | undefined => {
    if (!a) return undefined;
    const init = tf.tensor1d(a);
    const t = tf.variable(init, true);
    init.dispose(); // a variable copies its initial value
    vars.push(t);
    return t;
  };
  return { make, vars };
}

/**
 * Each of VARS gets a finite, somewhere non-zero gradient of ⟨f(), r⟩ (r a fixed random [rows, dim]
 * matrix, `f` the tower's embeddings); `every`: all of them must have a gradient entry. Disposes what it made.
 */
export function expectMaskGradients(f: () => tf.Tensor, vars: tf.Variable[], shape: [number, number], opts: { every?: boolean } = {}): void {
  const r = tf.randomNormal(shape, 0, 1, 'float32', 9);
  const { value, grads } = tf.variableGrads(() => f().mul(r).sum() as tf.Scalar, vars);
  try {
    expect(Number.isFinite(value.dataSync()[0])).toBe(true);
    if (opts.every ?? true) expect(Object.keys(grads)).toHaveLength(vars.length);
    for (const v of vars) {
      const g = grads[v.name].dataSync();
      expect(g.length).toBe(v.size);
      expect(g.every((e) => Number.isFinite(e))).toBe(true);
      expect(g.some((e) => e !== 0)).toBe(true);
    }
  } finally {
    tf.dispose([value, r, ...Object.values(grads)]);
  }
}

/** After a mask set's `remove()` (twice: idempotent): no hooks left, and every path in NORMS is a plain LayerNorm again. */
export function expectMasksRemoved(model: CLIP, handle: { remove(): void }, norms: readonly string[]): void {
  handle.remove();
  handle.remove(); // idempotent
  expect(model.hasHooks()).toBe(false);
  const plainNorm = (p: string): boolean => {
    const m = model.get(p);
    return m instanceof LayerNorm && !(m instanceof MaskedLayerNorm);
  };
  expect(norms.every(plainNorm)).toBe(true);
}

/** Spreads every gate's ln α over [−3, 3] (draws seeded from `seed` on), then clamps them. */
export function spreadLogAlphas(gates: { readonly logAlphas: readonly tf.Variable[]; clamp(): void }, seed: number): void {
  let s = seed;
  for (const la of gates.logAlphas) tf.tidy(() => la.assign(tf.randomUniform(la.shape, -3, 3, 'float32', s++)));
  gates.clamp();
}

/**
 * With `gates` installed and spread (`spreadLogAlphas`), in eval mode: `gates.prune(model)` gives a smaller image
 * tower with the masked model's image embeddings of X (≤ 1e-5). Returns the pruned model (the caller disposes it).
 */
export function expectImageGatesPruneExactly(model: CLIP, gates: { prune(m: CLIP): CLIP }, x: tf.Tensor4D): CLIP {
  model.eval();
  const embed = (m: CLIP) => tf.tidy(() => m.encodeImage(x).dataSync() as Float32Array);
  const masked = embed(model);
  const pruned = gates.prune(model);
  expect(pruned.imageEncoder.numParams()).toBeLessThan(model.imageEncoder.numParams());
  expect(relErr(embed(pruned), masked)).toBeLessThan(1e-5);
  return pruned;
}
