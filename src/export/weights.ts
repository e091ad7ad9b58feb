/** Reading module weights into plain arrays for ONNX initializers (PyTorch layouts). */
import * as tf from '../base/tf.js';
import { MclipError } from '../errors.js';
import type { Module } from '../base/nn/module.js';

/** A parameter of `m` itself (not of a child), by name. */
export function ownParam(m: Module, name: string): tf.Tensor {
  const p = m.namedParams().find(([n]) => n === name);
  if (!p) throw new MclipError(`export: ${m.constructor.name} has no parameter '${name}'`);
  return p[1].variable;
}

/**
 * tf.tidy for callbacks that return plain data: tf.tidy walks whatever its callback returns looking for
 * tensors, element by element through typed arrays (about 20 s for the S0 weights); this keeps the result
 * out of that walk.
 */
export function tidyData<T>(fn: () => T): T {
  let out!: T;
  tf.tidy(() => {
    out = fn();
  });
  return out;
}

/** A copy of the tensor's values as float32. */
export function f32(t: tf.Tensor): Float32Array {
  return Float32Array.from(t.dataSync() as Float32Array);
}

/** TF.js conv kernel (dense HWIO or depthwise [kh,kw,Ci,m]) → PyTorch OIHW data and dims. */
export function oihw(w: tf.Tensor4D, depthwise: boolean): { data: Float32Array; dims: number[] } {
  const [kh, kw, ci, co] = w.shape;
  return tidyData(() => {
    if (depthwise) return { data: f32(w.transpose([2, 3, 0, 1])), dims: [ci * co, 1, kh, kw] };
    return { data: f32(w.transpose([3, 2, 0, 1])), dims: [co, ci, kh, kw] };
  });
}
