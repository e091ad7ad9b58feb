/** Flat copies of a model's weights and gradients for the shared memory of data-parallel training. */
import * as tf from '../../tf.js';
import type { Module } from '../../nn/module.js';

/** Number of values of every parameter and buffer, and of the trainable ones. */
export function valueCounts(model: Module): { weights: number; grads: number } {
  let weights = 0;
  let grads = 0;
  for (const [, p] of model.namedParams()) {
    weights += p.variable.size;
    if (p.trainable) grads += p.variable.size;
  }
  return { weights, grads };
}

/** Writes every parameter and buffer into `out` (namedParams order). */
export function storeWeights(model: Module, out: Float32Array): void {
  let o = 0;
  for (const [, p] of model.namedParams()) {
    const v = p.variable.dataSync();
    out.set(v, o);
    o += v.length;
  }
}

/** Assigns every parameter and buffer from `src` (namedParams order). */
export function loadWeights(model: Module, src: Float32Array): void {
  let o = 0;
  for (const [, p] of model.namedParams()) {
    const n = p.variable.size;
    const values = src.subarray(o, o + n);
    o += n;
    tf.tidy(() => p.variable.assign(p.variable.dtype === 'int32' ? tf.tensor(Int32Array.from(values), p.variable.shape, 'int32') : tf.tensor(values, p.variable.shape, 'float32')));
  }
}

/** Gradients keyed by variable name → one flat vector in `names` order (zeros where the loss does not reach). */
export function flattenGrads(model: Module, names: readonly string[], grads: Record<string, tf.Tensor>, size: number): Float32Array {
  const byName = new Map(model.namedParams());
  const out = new Float32Array(size);
  let o = 0;
  for (const n of names) {
    const v = byName.get(n)!.variable;
    const g = grads[v.name];
    if (g) out.set(g.dataSync() as Float32Array, o);
    o += v.size;
  }
  return out;
}
