/**
 * Slice and SplitV (overrides): the wasm backend's Slice starts with `readSync(x)`, which copies the *whole*
 * input out of the wasm heap before it takes the part it needs, and its SplitV calls that Slice once per
 * part. Cutting a batch of 32 rows out of an evaluation's [1000, 64, 64, 3] image tensor thus copied 49 MB
 * per batch (2.7 s of a 12.5 s `mclip eval --engine ort` in a CPU profile), and every contiguous q/k/v slice
 * of an attention layer copied the whole q/k/v tensor. Here the parts are copied straight from the heap:
 * one block copy per run of contiguous elements (the trailing axes the slice keeps whole are merged into
 * the run). Exact: the same elements in the same order. String tensors go to the original kernels.
 */
import { Slice, SplitV, backend_util, slice_util, util, type KernelConfig, type NamedAttrMap, type SliceAttrs, type SplitVAttrs, type TensorInfo } from '@tensorflow/tfjs-core';
import { alloc, asKernelFunc, callKernel, heapOffsets, installKernel, type KernelArgs, type TypedArray, type WasmBackend } from './util.js';

/**
 * Copies the box `begin` + `size` of a row-major tensor of `shape` at element offset `src` of `heap` to `dst`
 * (densely, row-major). The trailing axes kept whole are merged into one run; the axes before the run are
 * walked with an odometer.
 */
export function copyBox(heap: TypedArray, src: number, dst: number, shape: readonly number[], begin: readonly number[], size: readonly number[]): void {
  const rank = shape.length;
  if (size.some((s) => s === 0)) return;
  if (rank === 0) {
    heap[dst] = heap[src]!;
    return;
  }
  const strides = new Array<number>(rank);
  strides[rank - 1] = 1;
  for (let j = rank - 2; j >= 0; j--) strides[j] = strides[j + 1]! * shape[j + 1]!;
  // k: the outermost axis of the contiguous run (every axis after it is whole)
  let k = rank - 1;
  while (k > 0 && begin[k] === 0 && size[k] === shape[k]) k--;
  const run = size[k]! * strides[k]!;
  let base = src + begin[k]! * strides[k]!;
  for (let j = 0; j < k; j++) base += begin[j]! * strides[j]!;
  const idx = new Array<number>(k).fill(0);
  let d = dst;
  for (;;) {
    let s = base;
    for (let j = 0; j < k; j++) s += idx[j]! * strides[j]!;
    if (run === 1) heap[d] = heap[s]!;
    else heap.copyWithin(d, s, s + run);
    d += run;
    let j = k - 1;
    while (j >= 0 && ++idx[j]! === size[j]) idx[j--] = 0;
    if (j < 0) return;
  }
}

/** A new tensor holding the box `begin` + `size` of `x` (numeric dtypes). */
function sliceTensor(backend: WasmBackend, x: TensorInfo, begin: number[], size: number[]): TensorInfo {
  const out = alloc(backend, size, x.dtype);
  if (util.sizeFromShape(size) === 0) return out;
  // views after the allocation (a heap growth detaches earlier ones)
  const { heap, src, dst } = heapOffsets(backend, x, out);
  copyBox(heap, src, dst, x.shape, begin, size);
  return out;
}

export function installSlice(): boolean {
  return installKernel(Slice, (original: KernelConfig | undefined) => {
    const orig = original?.kernelFunc;
    return asKernelFunc(({ inputs, backend, attrs }: KernelArgs<SliceAttrs>): TensorInfo => {
      const x = inputs.x!;
      if (x.dtype === 'string') return callKernel(Slice, backend, inputs, attrs as unknown as NamedAttrMap, orig);
      const [begin, size] = slice_util.parseSliceParams(x, attrs.begin, attrs.size);
      slice_util.assertParamsValid(x, begin, size);
      return sliceTensor(backend, x, begin, size);
    });
  });
}

export function installSplitV(): boolean {
  return installKernel(SplitV, (original: KernelConfig | undefined) => {
    const orig = original?.kernelFunc;
    return (params) => {
      const { inputs, attrs } = params;
      const backend = params.backend as WasmBackend;
      const x = inputs.x!;
      const a = (attrs ?? {}) as unknown as SplitVAttrs;
      if (x.dtype === 'string') {
        if (orig == null) throw new Error('mclip: wasm kernel SplitV is not registered');
        return orig(params);
      }
      const axis = util.parseAxisParam(a.axis, x.shape)[0]!;
      const sizes = backend_util.prepareSplitSize(x, a.numOrSizeSplits, axis);
      const begin = new Array<number>(x.shape.length).fill(0);
      return sizes.map((s) => {
        const size = [...x.shape];
        size[axis] = s;
        const part = sliceTensor(backend, x, [...begin], size);
        begin[axis]! += s;
        return part;
      });
    };
  });
}
