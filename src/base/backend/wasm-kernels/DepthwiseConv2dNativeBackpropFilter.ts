/**
 * DepthwiseConv2dNativeBackpropFilter (missing in tfjs-backend-wasm 4.22), direct JS loop over the
 * wasm heap: dW[kh, kw, c, m] = Σ_{b,oh,ow} x[b, oh·sh + kh·dh − top, ow·sw + kw·dw − left, c] ·
 * dy[b, oh, ow, c·mult + m]. Any stride / dilation / padding / channel multiplier; accumulates in
 * float64.
 */
import {
  backend_util,
  DepthwiseConv2dNativeBackpropFilter,
  type DepthwiseConv2dNativeBackpropFilterAttrs,
  type TensorInfo,
} from '@tensorflow/tfjs-core';
import { alloc, asKernelFunc, installKernel, viewF32, type KernelArgs, type WasmBackend } from './util.js';

export function depthwiseFilterGrad(backend: WasmBackend, x: TensorInfo, dy: TensorInfo, ci: backend_util.Conv2DInfo): TensorInfo {
  const { batchSize: N, inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW, outChannels: CO } = ci;
  const { filterHeight: KH, filterWidth: KW, strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw } = ci;
  const mult = CO / C;
  const pt = ci.padInfo.top;
  const pl = ci.padInfo.left;
  const acc = new Float64Array(KH * KW * CO);
  const out = alloc(backend, [KH, KW, C, mult]);
  const xv = viewF32(backend, x);
  const gv = viewF32(backend, dy);
  const xStep = sw * C;
  for (let b = 0; b < N; b++) {
    for (let oh = 0; oh < OH; oh++) {
      for (let kh = 0; kh < KH; kh++) {
        const ih = oh * sh + kh * dh - pt;
        if (ih < 0 || ih >= H) continue;
        const xRow = (b * H + ih) * W * C;
        const gRow = (b * OH + oh) * OW * CO;
        for (let kw = 0; kw < KW; kw++) {
          const a0 = (kh * KW + kw) * CO;
          // valid ow range: 0 <= ow*sw + kw*dw - pl < W
          const lo = Math.max(0, Math.ceil((pl - kw * dw) / sw));
          const hi = Math.min(OW, Math.floor((W - 1 + pl - kw * dw) / sw) + 1);
          if (hi <= lo) continue;
          const xBase = xRow + (lo * sw + kw * dw - pl) * C;
          const gBase = gRow + lo * CO;
          if (mult === 1) {
            // 4 channels at a time, summed over ow in registers
            let c = 0;
            for (; c + 4 <= C; c += 4) {
              let s0 = 0;
              let s1 = 0;
              let s2 = 0;
              let s3 = 0;
              for (let ow = lo, xi = xBase + c, gi = gBase + c; ow < hi; ow++, xi += xStep, gi += CO) {
                s0 += xv[xi]! * gv[gi]!;
                s1 += xv[xi + 1]! * gv[gi + 1]!;
                s2 += xv[xi + 2]! * gv[gi + 2]!;
                s3 += xv[xi + 3]! * gv[gi + 3]!;
              }
              acc[a0 + c] += s0;
              acc[a0 + c + 1] += s1;
              acc[a0 + c + 2] += s2;
              acc[a0 + c + 3] += s3;
            }
            for (; c < C; c++) {
              let s = 0;
              for (let ow = lo, xi = xBase + c, gi = gBase + c; ow < hi; ow++, xi += xStep, gi += CO) s += xv[xi]! * gv[gi]!;
              acc[a0 + c] += s;
            }
          } else {
            for (let ow = lo, xi = xBase, gi = gBase; ow < hi; ow++, xi += xStep, gi += CO) {
              for (let c = 0; c < C; c++) {
                const xc = xv[xi + c]!;
                const j0 = c * mult;
                for (let m = 0; m < mult; m++) acc[a0 + j0 + m] += xc * gv[gi + j0 + m]!;
              }
            }
          }
        }
      }
    }
  }
  viewF32(backend, out).set(acc);
  return out;
}

export function installDepthwiseConv2dNativeBackpropFilter(): boolean {
  return installKernel(DepthwiseConv2dNativeBackpropFilter, () =>
    asKernelFunc(({ inputs, backend, attrs }: KernelArgs<DepthwiseConv2dNativeBackpropFilterAttrs>): TensorInfo => {
      const { x, dy } = inputs as { x: TensorInfo; dy: TensorInfo };
      const { strides, dilations, pad, dimRoundingMode, filterShape } = attrs;
      const ci = backend_util.computeConv2DInfo(
        x.shape as [number, number, number, number],
        filterShape,
        strides,
        dilations ?? 1,
        pad,
        dimRoundingMode,
        true,
      );
      return depthwiseFilterGrad(backend, x, dy, ci);
    }),
  );
}
