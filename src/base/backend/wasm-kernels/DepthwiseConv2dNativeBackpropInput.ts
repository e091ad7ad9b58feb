/**
 * DepthwiseConv2dNativeBackpropInput (missing in tfjs-backend-wasm 4.22).
 *  - stride 1, dilation 1, pads within the filter size: dx = depthwise conv of dy with the filter
 *    flipped spatially (explicit pads KH−1−top, …) on the fast XNNPACK DepthwiseConv2dNative; for a
 *    channel multiplier > 1 that is a depthwise conv over C·mult channels followed by summing each
 *    group of `mult` channels;
 *  - otherwise: direct JS scatter loop over the wasm heap.
 */
import {
  backend_util,
  DepthwiseConv2dNative,
  DepthwiseConv2dNativeBackpropInput,
  type DepthwiseConv2dNativeBackpropInputAttrs,
  type NamedAttrMap,
  type TensorInfo,
} from '@tensorflow/tfjs-core';
import { alloc, asKernelFunc, callKernel, free, installKernel, viewF32, type KernelArgs, type WasmBackend } from './util.js';

function sameShape(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function viaDepthwise(backend: WasmBackend, dy: TensorInfo, filter: TensorInfo, ci: backend_util.Conv2DInfo): TensorInfo | null {
  const { batchSize: N, inHeight: H, inWidth: W, inChannels: C, outChannels: CO, filterHeight: KH, filterWidth: KW } = ci;
  const { top, bottom, left, right } = ci.padInfo;
  if (ci.strideHeight !== 1 || ci.strideWidth !== 1 || ci.dilationHeight !== 1 || ci.dilationWidth !== 1) return null;
  const pads = [KH - 1 - top, KH - 1 - bottom, KW - 1 - left, KW - 1 - right];
  if (pads.some((p) => p < 0)) return null;
  const mult = CO / C;
  const flipped = alloc(backend, [KH, KW, CO, 1]);
  {
    const w = viewF32(backend, filter);
    const f = viewF32(backend, flipped);
    for (let kh = 0; kh < KH; kh++) {
      for (let kw = 0; kw < KW; kw++) {
        const s = (kh * KW + kw) * CO;
        f.set(w.subarray(s, s + CO), ((KH - 1 - kh) * KW + (KW - 1 - kw)) * CO);
      }
    }
  }
  let conv: TensorInfo;
  try {
    conv = callKernel(DepthwiseConv2dNative, backend, { x: dy, filter: flipped }, {
      strides: [1, 1],
      pad: [[0, 0], [pads[0]!, pads[1]!], [pads[2]!, pads[3]!], [0, 0]],
      dilations: [1, 1],
    } as unknown as NamedAttrMap);
  } finally {
    free(backend, flipped);
  }
  if (!sameShape(conv.shape, [N, H, W, CO])) {
    free(backend, conv);
    return null;
  }
  if (mult === 1) return conv;
  const dx = alloc(backend, ci.inShape);
  const cv = viewF32(backend, conv);
  const xv = viewF32(backend, dx);
  for (let i = 0, n = N * H * W * C; i < n; i++) {
    let s = 0;
    const j = i * mult;
    for (let m = 0; m < mult; m++) s += cv[j + m]!;
    xv[i] = s;
  }
  free(backend, conv);
  return dx;
}

function viaScatter(backend: WasmBackend, dy: TensorInfo, filter: TensorInfo, ci: backend_util.Conv2DInfo): TensorInfo {
  const { batchSize: N, inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW, outChannels: CO } = ci;
  const { filterHeight: KH, filterWidth: KW, strideHeight: sh, strideWidth: sw, dilationHeight: dh, dilationWidth: dw } = ci;
  const mult = CO / C;
  const pt = ci.padInfo.top;
  const pl = ci.padInfo.left;
  const dx = alloc(backend, ci.inShape);
  const xv = viewF32(backend, dx);
  const gv = viewF32(backend, dy);
  const wv = viewF32(backend, filter);
  xv.fill(0);
  const xStep = sw * C;
  for (let b = 0; b < N; b++) {
    for (let oh = 0; oh < OH; oh++) {
      for (let kh = 0; kh < KH; kh++) {
        const ih = oh * sh + kh * dh - pt;
        if (ih < 0 || ih >= H) continue;
        const xRow = (b * H + ih) * W * C;
        const gRow = (b * OH + oh) * OW * CO;
        for (let kw = 0; kw < KW; kw++) {
          const w0Base = (kh * KW + kw) * CO;
          const lo = Math.max(0, Math.ceil((pl - kw * dw) / sw));
          const hi = Math.min(OW, Math.floor((W - 1 + pl - kw * dw) / sw) + 1);
          if (hi <= lo) continue;
          const xBase = xRow + (lo * sw + kw * dw - pl) * C;
          const gBase = gRow + lo * CO;
          if (mult === 1) {
            // filter taps for 4 channels held in registers, ow innermost
            let c = 0;
            for (; c + 4 <= C; c += 4) {
              const w0 = wv[w0Base + c]!;
              const w1 = wv[w0Base + c + 1]!;
              const w2 = wv[w0Base + c + 2]!;
              const w3 = wv[w0Base + c + 3]!;
              for (let ow = lo, xi = xBase + c, gi = gBase + c; ow < hi; ow++, xi += xStep, gi += CO) {
                xv[xi] = xv[xi]! + gv[gi]! * w0;
                xv[xi + 1] = xv[xi + 1]! + gv[gi + 1]! * w1;
                xv[xi + 2] = xv[xi + 2]! + gv[gi + 2]! * w2;
                xv[xi + 3] = xv[xi + 3]! + gv[gi + 3]! * w3;
              }
            }
            for (; c < C; c++) {
              const w = wv[w0Base + c]!;
              for (let ow = lo, xi = xBase + c, gi = gBase + c; ow < hi; ow++, xi += xStep, gi += CO) xv[xi] = xv[xi]! + gv[gi]! * w;
            }
          } else {
            for (let ow = lo, xi = xBase, gi = gBase; ow < hi; ow++, xi += xStep, gi += CO) {
              for (let c = 0; c < C; c++) {
                const j0 = c * mult;
                let s = 0;
                for (let m = 0; m < mult; m++) s += gv[gi + j0 + m]! * wv[w0Base + j0 + m]!;
                xv[xi + c] = xv[xi + c]! + s;
              }
            }
          }
        }
      }
    }
  }
  return dx;
}

export function depthwiseInputGrad(backend: WasmBackend, dy: TensorInfo, filter: TensorInfo, ci: backend_util.Conv2DInfo): TensorInfo {
  return viaDepthwise(backend, dy, filter, ci) ?? viaScatter(backend, dy, filter, ci);
}

export function installDepthwiseConv2dNativeBackpropInput(): boolean {
  return installKernel(DepthwiseConv2dNativeBackpropInput, () =>
    asKernelFunc(({ inputs, backend, attrs }: KernelArgs<DepthwiseConv2dNativeBackpropInputAttrs>): TensorInfo => {
      const { dy, filter } = inputs as { dy: TensorInfo; filter: TensorInfo };
      const { strides, dilations, pad, dimRoundingMode, inputShape } = attrs;
      const ci = backend_util.computeConv2DInfo(
        inputShape,
        filter.shape as [number, number, number, number],
        strides,
        dilations ?? 1,
        pad,
        dimRoundingMode,
        true,
      );
      return depthwiseInputGrad(backend, dy, filter, ci);
    }),
  );
}
