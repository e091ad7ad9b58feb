/**
 * UnsortedSegmentSum (missing in tfjs-backend-wasm 4.22; needed by the gather gradient, i.e. every
 * embedding table): out[segmentIds[i], ...] += x[i, ...]; ids outside [0, numSegments) are dropped.
 * segmentIds may have any rank r ≤ rank(x); out has shape [numSegments, ...x.shape.slice(r)].
 */
import { UnsortedSegmentSum, type TensorInfo, type UnsortedSegmentSumAttrs } from '@tensorflow/tfjs-core';
import { alloc, asKernelFunc, installKernel, view, type KernelArgs } from './util.js';

export function installUnsortedSegmentSum(): boolean {
  return installKernel(UnsortedSegmentSum, () =>
    asKernelFunc(({ inputs, backend, attrs }: KernelArgs<UnsortedSegmentSumAttrs>): TensorInfo => {
      const { x, segmentIds } = inputs as { x: TensorInfo; segmentIds: TensorInfo };
      const numSegments = attrs.numSegments;
      const r = segmentIds.shape.length;
      const inner = x.shape.slice(r).reduce((p, q) => p * q, 1);
      const dtype = x.dtype === 'bool' ? 'int32' : x.dtype;
      const out = alloc(backend, [numSegments, ...x.shape.slice(r)], dtype);
      const ov = view(backend, out);
      const xv = view(backend, x);
      const ids = view(backend, segmentIds);
      ov.fill(0);
      const n = ids.length;
      if (inner === 1) {
        for (let i = 0; i < n; i++) {
          const s = ids[i]!;
          if (s >= 0 && s < numSegments) ov[s] = ov[s]! + xv[i]!;
        }
      } else {
        for (let i = 0; i < n; i++) {
          const s = ids[i]!;
          if (!(s >= 0 && s < numSegments)) continue;
          const src = i * inner;
          const dst = s * inner;
          for (let j = 0; j < inner; j++) ov[dst + j] = ov[dst + j]! + xv[src + j]!;
        }
      }
      return out;
    }),
  );
}
