/**
 * GatherV2 (override): the wasm backend gathers element by element with strided index arithmetic (in a
 * profile of the emoji text tower at batch 80: 39 ms for the three gathers of a plain pass, 128 ms for the
 * five of a ToMe pass). A gather along `axis` copies whole slices — the elements after `axis` — so it is
 * done here as one block copy per (batch, outer index, gathered index). Measured on 6,160 rows of 128
 * gathered from [4096, 128], read-back included: 33 ms (42 ns per element) in the original, 2.3 ms
 * (2.9 ns) here. With `batchDims` > 0 the original returns wrong values (tfjs-backend-wasm 4.22: 1.26 max
 * relative error against the cpu backend on [2, 5, 8] gathered along axis 1 with batchDims 1), so such
 * gathers always run here. Indices are checked as the original does (same message). Other gathers with
 * slices shorter than `BLOCK_MIN_ELEMS`, and string tensors, go to the original kernel.
 */
import { GatherV2, type GatherV2Attrs, type KernelConfig, type NamedAttrMap, type TensorInfo } from '@tensorflow/tfjs-core';
import { alloc, asKernelFunc, callKernel, heapOffsets, installKernel, view, type KernelArgs, type TypedArray } from './util.js';

/** Slice length (elements) from which block copies beat the original kernel. */
const BLOCK_MIN_ELEMS = 8;

/** Throws, as the original kernel does, on an index outside [0, dim − 1]. */
export function checkGatherIndices(idx: ArrayLike<number>, dim: number): void {
  for (let i = 0; i < idx.length; i++) {
    const v = idx[i]!;
    if (!(v >= 0 && v <= dim - 1)) throw new Error(`GatherV2: the index value ${v} is not in [0, ${dim - 1}]`);
  }
}

/**
 * out[b, o, i, :] = x[b, o, idx[b, i], :] for x seen as [batch, outer, dim, slice] and idx as [batch, n]
 * (element offsets into `heap`; indices checked beforehand).
 */
export function gatherSlices(heap: TypedArray, src: number, dst: number, idx: ArrayLike<number>, batch: number, outer: number, dim: number, slice: number): void {
  const n = idx.length / batch;
  let d = dst;
  for (let b = 0; b < batch; b++) {
    for (let o = 0; o < outer; o++) {
      const base = src + (b * outer + o) * dim * slice;
      for (let i = 0; i < n; i++) {
        const s = base + idx[b * n + i]! * slice;
        if (slice === 1) heap[d] = heap[s]!;
        else heap.copyWithin(d, s, s + slice);
        d += slice;
      }
    }
  }
}

export function installGatherV2(): boolean {
  return installKernel(GatherV2, (original: KernelConfig | undefined) => {
    const orig = original?.kernelFunc;
    return asKernelFunc(({ inputs, backend, attrs }: KernelArgs<GatherV2Attrs>): TensorInfo => {
      const x = inputs.x!;
      const indices = inputs.indices!;
      const rank = x.shape.length;
      const axis = attrs.axis < 0 ? attrs.axis + rank : attrs.axis;
      const bd = attrs.batchDims ?? 0;
      const prod = (d: number[]) => d.reduce((a, b) => a * b, 1);
      const slice = prod(x.shape.slice(axis + 1));
      const batchOk = bd >= 0 && bd <= axis && bd <= indices.shape.length && x.shape.slice(0, bd).every((d, i) => d === indices.shape[i]);
      if (x.dtype !== 'string' && axis >= 0 && axis < rank && batchOk && (slice >= BLOCK_MIN_ELEMS || bd > 0) && (indices.dtype === 'int32' || indices.dtype === 'float32')) {
        const batch = prod(x.shape.slice(0, bd));
        const outer = prod(x.shape.slice(bd, axis));
        const dim = x.shape[axis]!;
        const idx = view(backend, indices).slice();
        checkGatherIndices(idx, dim);
        const out = alloc(backend, [...x.shape.slice(0, axis), ...indices.shape.slice(bd), ...x.shape.slice(axis + 1)], x.dtype);
        if (batch * outer * idx.length * slice === 0) return out;
        // views after the allocation (a heap growth detaches earlier ones)
        const { heap, src, dst } = heapOffsets(backend, x, out);
        gatherSlices(heap, src, dst, idx, batch, outer, dim, slice);
        return out;
      }
      return callKernel(GatherV2, backend, inputs, attrs as unknown as NamedAttrMap, orig);
    });
  });
}
