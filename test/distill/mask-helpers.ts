/**
 * What the mask tests of the three towers (text-masks, image-masks, vit-masks) share: trainable mask
 * variables made from mask values, the check that masks (or gate logits) receive gradients, and the check
 * that removing a mask set restores every plain LayerNorm.
 */
import { expect } from 'vitest';
import * as tf from '../../src/base/tf.js';
import type { CLIP } from '../../src/base/model/clip.js';
import { LayerNorm } from '../../src/base/layers/layer-norm.js';
import { MaskedLayerNorm } from '../../src/distill/masks/masked-layer-norm.js';

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
