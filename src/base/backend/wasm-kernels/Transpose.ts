/**
 * Transpose (override): the wasm backend's Transpose is fast (~0.5 ns/element) while a matrix fits
 * in cache but slow for large ones (6–14 ns/element for [2048,64] … [32768,576], not blocked).
 * After collapsing size-1 axes and runs of adjacent axes, a perm that is [1,0] or [0,2,1] on
 * matrices of at least JS_MIN_ELEMS elements is done here with a tiled JS loop (~2.5 ns/element).
 * A perm that keeps the innermost (collapsed) axis in place, e.g. the [3,B,H,N,d] → [B,N,3,H,d] of
 * the q/k/v gradient, moves whole rows of that axis: it is done here as one block copy per row
 * (measured 76 ns/element in the original kernel for d = 32, ~1 ns here). Everything else goes to the
 * original kernel.
 */
import { Transpose, type KernelConfig, type NamedAttrMap, type TensorInfo, type TransposeAttrs } from '@tensorflow/tfjs-core';
import { alloc, asKernelFunc, callKernel, heapOffsets, installKernel, transposeBatched, view, type KernelArgs, type TypedArray } from './util.js';

/** Drops size-1 axes and merges runs of axes that stay adjacent; returns the collapsed problem. */
export function collapseTranspose(shape: number[], perm: number[]): { shape: number[]; perm: number[] } {
  const kept = shape.map((_, i) => i).filter((i) => shape[i] !== 1);
  const newIndex = new Map(kept.map((ax, j) => [ax, j]));
  const s = kept.map((i) => shape[i]!);
  const p = perm.filter((ax) => shape[ax] !== 1).map((ax) => newIndex.get(ax)!);
  const groups: number[][] = [];
  for (const ax of p) {
    const g = groups[groups.length - 1];
    if (g != null && g[g.length - 1]! + 1 === ax) g.push(ax);
    else groups.push([ax]);
  }
  // order[k] = output position of the k-th group in input order
  const order = groups.map((_, j) => j).sort((a, b) => groups[a]![0]! - groups[b]![0]!);
  const outShape = order.map((j) => groups[j]!.reduce((acc, ax) => acc * s[ax]!, 1));
  const rankOf = new Map(order.map((j, k) => [j, k]));
  return { shape: outShape, perm: groups.map((_, j) => rankOf.get(j)!) };
}

/** Innermost run (elements) from which a perm that keeps it is done as block copies. */
const BLOCK_MIN_ELEMS = 8;

/**
 * out = x transposed by `perm` for a collapsed problem whose perm ends with its last axis: one
 * `copyWithin` of `shape[last]` elements per output row, rows visited in output order.
 */
export function transposeBlocks(heap: TypedArray, src: number, dst: number, shape: number[], perm: number[]): void {
  const r = shape.length;
  const inner = shape[r - 1]!;
  const strides = new Array<number>(r);
  strides[r - 1] = 1;
  for (let i = r - 2; i >= 0; i--) strides[i] = strides[i + 1]! * shape[i + 1]!;
  // the outer axes in output order, with their source strides
  const outer = perm.slice(0, r - 1);
  const dims = outer.map((ax) => shape[ax]!);
  const step = outer.map((ax) => strides[ax]!);
  const rows = dims.reduce((a, b) => a * b, 1);
  const idx = new Array<number>(r - 1).fill(0);
  let s = src;
  let d = dst;
  for (let row = 0; row < rows; row++) {
    heap.copyWithin(d, s, s + inner);
    d += inner;
    for (let k = r - 2; k >= 0; k--) {
      idx[k]!++;
      s += step[k]!;
      if (idx[k]! < dims[k]!) break;
      s -= step[k]! * dims[k]!;
      idx[k] = 0;
    }
  }
}

/** Per-matrix size from which the JS transpose beats the wasm one (measured crossover 40k–130k). */
const JS_MIN_ELEMS = 65536;

export function installTranspose(): boolean {
  return installKernel(Transpose, (original: KernelConfig | undefined) => {
    const orig = original?.kernelFunc;
    return asKernelFunc(({ inputs, backend, attrs }: KernelArgs<TransposeAttrs>): TensorInfo => {
      const x = inputs.x!;
      if (x.dtype !== 'string' && x.shape.length >= 2) {
        const c = collapseTranspose(x.shape, attrs.perm);
        const p = c.perm.join(',');
        let dims: [number, number, number] | null = null;
        if (p === '1,0') dims = [1, c.shape[0]!, c.shape[1]!];
        else if (p === '0,2,1') dims = [c.shape[0]!, c.shape[1]!, c.shape[2]!];
        if (dims != null && dims[1] * dims[2] >= JS_MIN_ELEMS) {
          const outShape = attrs.perm.map((ax) => x.shape[ax]!);
          const out = alloc(backend, outShape, x.dtype);
          transposeBatched(view(backend, x), 0, view(backend, out), 0, ...dims);
          return out;
        }
        const r = c.perm.length;
        if (dims == null && r >= 3 && c.perm[r - 1] === r - 1 && c.shape[r - 1]! >= BLOCK_MIN_ELEMS) {
          const outShape = attrs.perm.map((ax) => x.shape[ax]!);
          const out = alloc(backend, outShape, x.dtype);
          const { heap, src, dst } = heapOffsets(backend, x, out);
          transposeBlocks(heap, src, dst, c.shape, c.perm);
          return out;
        }
      }
      return callKernel(Transpose, backend, inputs, attrs as unknown as NamedAttrMap, orig);
    });
  });
}
