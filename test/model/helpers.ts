import * as tf from '../../src/base/tf.js';
import { readFileSync } from 'node:fs';
import { readSafetensors } from '../../src/base/io/safetensors.js';
import { toFloat32, type StateDict } from '../../src/base/io/tensor-data.js';
import { fixture } from '../paths.js';
import { MICRO_CONTEXT, MICRO_VOCAB } from '../micro-config.js';

/** max|Δ| / max|ref| between a reference tensor and ours. */
export function relErr(ref: ArrayLike<number>, got: ArrayLike<number>): number {
  if (ref.length !== got.length) throw new Error(`length ${got.length} vs reference ${ref.length}`);
  let md = 0;
  let mr = 0;
  for (let i = 0; i < ref.length; i++) {
    md = Math.max(md, Math.abs(ref[i] - got[i]));
    mr = Math.max(mr, Math.abs(ref[i]));
  }
  return md / Math.max(mr, 1e-30);
}

export function readFixture(...parts: string[]): StateDict {
  return readSafetensors(fixture(...parts)).tensors;
}

export function readJson<T>(...parts: string[]): T {
  return JSON.parse(readFileSync(fixture(...parts), 'utf8')) as T;
}

/** The fixture image [N,3,H,W] as an NHWC tensor. */
export function imageNHWC(sd: StateDict, key = 'image'): tf.Tensor4D {
  const t = sd.get(key)!;
  return tf.tidy(() => tf.tensor4d(toFloat32(t), t.shape as [number, number, number, number]).transpose([0, 2, 3, 1]));
}

export function tokensTensor(sd: StateDict, key = 'tokens'): tf.Tensor2D {
  const t = sd.get(key)!;
  return tf.tensor2d(Int32Array.from(t.data as Int32Array), t.shape as [number, number], 'int32');
}

/**
 * Token rows of the micro context: SOT, a few word ids, EOT at `eot[b]`, zero padding. The words depend on the
 * row index (`by: 'row'`) or on the caption length (`by: 'length'`: the same words for the same row content).
 */
export function microTokens(eot: number[], by: 'row' | 'length' = 'row'): tf.Tensor2D {
  const s = MICRO_CONTEXT;
  const data = new Int32Array(eot.length * s);
  eot.forEach((e, b) => {
    data[b * s] = MICRO_VOCAB - 2;
    for (let j = 1; j < e; j++) data[b * s + j] = 1 + (((by === 'row' ? b : e) * 7 + j * 13) % 200);
    data[b * s + e] = MICRO_VOCAB - 1;
  });
  return tf.tensor2d(data, [eot.length, s], 'int32');
}
