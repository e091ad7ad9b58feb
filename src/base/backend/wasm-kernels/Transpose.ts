/**
 * Transpose (override): the wasm backend's Transpose is fast (~0.5 ns/element) while a matrix fits
 * in cache but slow for large ones (6–14 ns/element for [2048,64] … [32768,576], not blocked).
 * After collapsing size-1 axes and runs of adjacent axes, a perm that is [1,0] or [0,2,1] on
 * matrices of at least JS_MIN_ELEMS elements is done here with a tiled JS loop (~2.5 ns/element).
 * Everything else goes to the original kernel.
 */
import { Transpose, type KernelConfig, type NamedAttrMap, type TensorInfo, type TransposeAttrs } from '@tensorflow/tfjs-core';
import { alloc, asKernelFunc, callKernel, installKernel, transposeBatched, view, type KernelArgs } from './util.js';

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
      }
      return callKernel(Transpose, backend, inputs, attrs as unknown as NamedAttrMap, orig);
    });
  });
}
