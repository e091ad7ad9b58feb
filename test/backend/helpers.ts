import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { initBackend } from '../../src/base/backend/index.js';

/** wasm (with mclip's kernels) + cpu both ready, gradients registered; leaves wasm active. */
export async function setupBackends(): Promise<void> {
  await initBackend({ backend: 'wasm', quiet: true });
  await tf.setBackend('cpu');
  (tf.backend() as { firstUse?: boolean }).firstUse = false;
  await tf.setBackend('wasm');
}

/** Deterministic pseudo-random normal-ish data. */
export function randomData(n: number, seed: number): Float32Array {
  let s = (seed * 2654435761) >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let acc = 0;
    for (let k = 0; k < 3; k++) {
      s ^= s << 13;
      s >>>= 0;
      s ^= s >>> 17;
      s ^= s << 5;
      s >>>= 0;
      acc += s / 4294967296 - 0.5;
    }
    out[i] = acc * 2;
  }
  return out;
}

export interface Input {
  shape: number[];
  dtype?: 'float32' | 'int32';
  /** explicit values (else random) */
  values?: number[] | Float32Array | Int32Array;
}

type Fn = (...xs: tf.Tensor[]) => tf.Tensor | tf.Tensor[];

/** Runs fn on `backend` over fresh tensors built from the same data; returns the outputs as arrays. */
export async function runOn(backend: string, fn: Fn, inputs: Input[], seed = 1): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  return tf.tidy(() => {
    const xs = inputs.map((inp, i) => {
      const n = inp.shape.reduce((a, b) => a * b, 1);
      const v = inp.values ?? randomData(n, seed * 100 + i);
      return tf.tensor(v, inp.shape, inp.dtype ?? 'float32');
    });
    const out = fn(...xs);
    return (Array.isArray(out) ? out : [out]).map((t) => Float32Array.from(t.dataSync() as ArrayLike<number>));
  });
}

/** max|a − b| / max|b| over all outputs (0 when both are all zero). */
export function relErr(a: Float32Array[], ref: Float32Array[]): number {
  let num = 0;
  let den = 0;
  if (a.length !== ref.length) return Infinity;
  for (let k = 0; k < ref.length; k++) {
    if (a[k]!.length !== ref[k]!.length) return Infinity;
    for (let i = 0; i < ref[k]!.length; i++) {
      num = Math.max(num, Math.abs(a[k]![i]! - ref[k]![i]!));
      den = Math.max(den, Math.abs(ref[k]![i]!));
    }
  }
  return den === 0 ? num : num / den;
}

/** Computes fn on wasm and cpu from the same inputs; returns the relative error (wasm vs cpu). */
export async function compareBackends(fn: Fn, inputs: Input[], seed = 1): Promise<number> {
  const ref = await runOn('cpu', fn, inputs, seed);
  const got = await runOn('wasm', fn, inputs, seed);
  return relErr(got, ref);
}

/** tf.grads of sum(f(...) * fixed random weights), for all float inputs. */
export function gradsOf(f: (...xs: tf.Tensor[]) => tf.Tensor, nFloat?: number): Fn {
  return (...xs: tf.Tensor[]) => {
    const n = nFloat ?? xs.length;
    const rest = xs.slice(n);
    const g = tf.grads((...ys: tf.Tensor[]) => {
      const y = f(...ys, ...rest);
      const w = tf.tensor(randomData(y.size, 999), y.shape);
      return tf.sum(tf.mul(y, w));
    });
    return g(xs.slice(0, n));
  };
}
