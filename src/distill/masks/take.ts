/**
 * The array surgery both pruners share (prune-text.ts, prune-image.ts): keeping some entries along axes of
 * a row-major float tensor, optionally scaling them, and checking deterministic mask values.
 */
import { MclipError } from '../../errors.js';

/** One axis to keep entries of, optionally scaling entry j (an index of the input) by scale[j]. */
export interface Take {
  axis: number;
  keep: readonly number[];
  scale?: ArrayLike<number>;
}

/** Keeps `keep` along each axis of a row-major float array, scaling as asked. */
export function take(shape: readonly number[], data: Float32Array, takes: readonly Take[]): { shape: number[]; data: Float32Array } {
  let s = [...shape];
  let d = data;
  for (const { axis, keep, scale } of takes) {
    const outer = s.slice(0, axis).reduce((a, b) => a * b, 1);
    const n = s[axis];
    const inner = s.slice(axis + 1).reduce((a, b) => a * b, 1);
    const out = new Float32Array(outer * keep.length * inner);
    for (let o = 0; o < outer; o++) {
      for (let j = 0; j < keep.length; j++) {
        const src = (o * n + keep[j]) * inner;
        const dst = (o * keep.length + j) * inner;
        const f = scale ? scale[keep[j]] : 1;
        if (f === 1) out.set(d.subarray(src, src + inner), dst);
        else for (let t = 0; t < inner; t++) out[dst + t] = d[src + t] * f;
      }
    }
    s = [...s.slice(0, axis), keep.length, ...s.slice(axis + 1)];
    d = out;
  }
  return { shape: s, data: d };
}

/** A mask's values (all ones when absent), checked: `n` entries in [0, 1]; errors name `who` and `name`. */
export function maskValues(who: string, v: Float32Array | undefined, n: number, name: string): Float32Array {
  if (v === undefined) return new Float32Array(n).fill(1);
  if (v.length !== n) throw new MclipError(`${who}: ${name} has ${v.length} entries, expected ${n}`);
  v.forEach((x, j) => {
    if (!(Number.isFinite(x) && x >= 0 && x <= 1)) throw new MclipError(`${who}: ${name}[${j}] = ${x}, expected a value in [0, 1]`);
  });
  return v;
}

export const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
/** Indices of the non-zero entries of a mask. */
export const kept = (z: Float32Array): number[] => range(z.length).filter((j) => z[j] !== 0);
