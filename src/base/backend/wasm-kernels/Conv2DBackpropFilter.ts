/**
 * Conv2DBackpropFilter (missing in tfjs-backend-wasm 4.22): dW[K, Co] = im2col(x)^T · dy.
 *
 * im2col is built directly in transposed layout colT[K, M] (K = kh·kw·ci, M = output pixels) by a
 * JS loop, then the plain (fast, SIMD) BatchMatMul computes colT · dy[M, Co] = dW. Work is chunked
 * over output rows so colT never exceeds scratchLimit() floats; partial results are summed.
 */
import {
  backend_util,
  BatchMatMul,
  Conv2DBackpropFilter,
  type Conv2DBackpropFilterAttrs,
  type TensorInfo,
} from '@tensorflow/tfjs-core';
import {
  alloc,
  asKernelFunc,
  callKernel,
  free,
  installKernel,
  reshaped,
  scratchLimit,
  viewF32,
  type KernelArgs,
  type WasmBackend,
} from './util.js';

/** colT[k, m] for output rows [r0, r1) (row = b·OH + oh), k = (kh·KW + kw)·Ci + ci, m = (row − r0)·OW + ow. */
function im2colT(xv: Float32Array, cv: Float32Array, ci: backend_util.Conv2DInfo, r0: number, r1: number): void {
  const { inHeight: H, inWidth: W, inChannels: Ci, outHeight: OH, outWidth: OW } = ci;
  const { filterHeight: KH, filterWidth: KW, strideHeight: sh, strideWidth: sw } = ci;
  const { dilationHeight: dh, dilationWidth: dw } = ci;
  const pt = ci.padInfo.top;
  const pl = ci.padInfo.left;
  const Mc = (r1 - r0) * OW;
  const xStep = sw * Ci;
  for (let r = r0; r < r1; r++) {
    const b = (r / OH) | 0;
    const oh = r - b * OH;
    const mBase = (r - r0) * OW;
    for (let kh = 0; kh < KH; kh++) {
      const ih = oh * sh + kh * dh - pt;
      const rowValid = ih >= 0 && ih < H;
      const xRow = (b * H + ih) * W * Ci;
      for (let kw = 0; kw < KW; kw++) {
        const kBase = (kh * KW + kw) * Ci;
        // valid ow range: 0 <= ow*sw + kw*dw - pl < W
        const lo = Math.min(OW, Math.max(0, Math.ceil((pl - kw * dw) / sw)));
        const hi = Math.max(lo, Math.min(OW, Math.floor((W - 1 + pl - kw * dw) / sw) + 1));
        const x0 = xRow + (lo * sw + kw * dw - pl) * Ci;
        for (let c = 0; c < Ci; c++) {
          const d0 = (kBase + c) * Mc + mBase;
          if (!rowValid) {
            cv.fill(0, d0, d0 + OW);
            continue;
          }
          if (lo > 0) cv.fill(0, d0, d0 + lo);
          for (let ow = lo, xi = x0 + c; ow < hi; ow++, xi += xStep) cv[d0 + ow] = xv[xi]!;
          if (hi < OW) cv.fill(0, d0 + hi, d0 + OW);
        }
      }
    }
  }
}

/** dW for conv2d(x, W) with conv geometry `ci` (channelsLast); returns a [KH, KW, Ci, Co] float32 tensor. */
export function conv2dFilterGrad(backend: WasmBackend, x: TensorInfo, dy: TensorInfo, ci: backend_util.Conv2DInfo): TensorInfo {
  const { batchSize: N, inChannels: Ci, outHeight: OH, outWidth: OW, outChannels: Co } = ci;
  const { filterHeight: KH, filterWidth: KW } = ci;
  const K = KH * KW * Ci;
  const rows = N * OH;
  const rowsPerChunk = Math.max(1, Math.min(rows, Math.floor(scratchLimit() / Math.max(1, K * OW))));
  let out: TensorInfo | null = null;
  for (let r0 = 0; r0 < rows; r0 += rowsPerChunk) {
    const r1 = Math.min(rows, r0 + rowsPerChunk);
    const Mc = (r1 - r0) * OW;
    const whole = r0 === 0 && r1 === rows;
    const colT = alloc(backend, [1, K, Mc]);
    const dyChunk = whole ? null : alloc(backend, [1, Mc, Co]);
    im2colT(viewF32(backend, x), viewF32(backend, colT), ci, r0, r1);
    if (dyChunk != null) viewF32(backend, dyChunk).set(viewF32(backend, dy).subarray(r0 * OW * Co, r1 * OW * Co));
    let part: TensorInfo;
    try {
      part = callKernel(BatchMatMul, backend, { a: colT, b: dyChunk ?? reshaped(dy, [1, Mc, Co]) }, {
        transposeA: false,
        transposeB: false,
      });
    } finally {
      free(backend, colT, dyChunk);
    }
    if (out == null) {
      out = part;
    } else {
      const acc = viewF32(backend, out);
      const p = viewF32(backend, part);
      for (let i = 0; i < acc.length; i++) acc[i] = acc[i]! + p[i]!;
      free(backend, part);
    }
  }
  if (out == null) {
    // empty output (no rows): the gradient is zero
    out = alloc(backend, [KH, KW, Ci, Co]);
    viewF32(backend, out).fill(0);
  }
  out.shape = [KH, KW, Ci, Co];
  return out;
}

export function installConv2DBackpropFilter(): boolean {
  return installKernel(Conv2DBackpropFilter, () =>
    asKernelFunc(({ inputs, backend, attrs }: KernelArgs<Conv2DBackpropFilterAttrs>): TensorInfo => {
      const { x, dy } = inputs as { x: TensorInfo; dy: TensorInfo };
      const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs;
      const fmt = backend_util.convertConv2DDataFormat(dataFormat);
      if (fmt !== 'channelsLast') {
        throw new Error(`mclip wasm Conv2DBackpropFilter supports only dataFormat 'NHWC', got '${dataFormat}'`);
      }
      const ci = backend_util.computeConv2DInfo(
        x.shape as [number, number, number, number],
        filterShape,
        strides,
        1,
        pad,
        dimRoundingMode,
        false,
        fmt,
      );
      return conv2dFilterGrad(backend, x, dy, ci);
    }),
  );
}
