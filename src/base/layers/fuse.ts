/**
 * Structural re-parameterisation algebra (methods.md §1.7), in TF.js weight layouts:
 * dense kernels [kh,kw,Ci,Co], depthwise kernels [kh,kw,Ci,m] (output channel c·m + j).
 * The output channel is always the flattened last axes, so per-output-channel scaling is a
 * broadcast over the last one (dense) or last two (depthwise) axes.
 */
import * as tf from '../tf.js';
import type { Conv2d } from './conv2d.js';
import type { BatchNorm2d } from './batch-norm.js';

export interface KernelBias {
  /** Kernel in TF.js layout. */
  w: tf.Tensor4D;
  /** Bias per output channel. */
  b: tf.Tensor1D;
}

/** Multiplies every output channel `o` of a kernel by t[o]. */
export function scaleOutputChannels(w: tf.Tensor4D, t: tf.Tensor1D, depthwise: boolean): tf.Tensor4D {
  return tf.tidy(() => {
    if (!depthwise) return w.mul(t) as tf.Tensor4D;
    const [, , ci, m] = w.shape;
    return w.mul(t.reshape([ci, m])) as tf.Tensor4D;
  });
}

/** (a) Conv (+ optional bias) followed by eval-mode BN → one biased conv. */
export function foldConvBn(conv: Conv2d, bn: BatchNorm2d): KernelBias {
  return tf.tidy(() => {
    const t = bn.weight.mul(tf.rsqrt(bn.runningVar.add(bn.eps))) as tf.Tensor1D;
    const w = scaleOutputChannels(conv.weight as tf.Tensor4D, t, conv.depthwise);
    const c = conv.bias ?? tf.zeros([conv.outChannels]);
    const b = bn.bias.add(c.sub(bn.runningMean).mul(t)) as tf.Tensor1D;
    return { w, b };
  });
}

/**
 * The identity as a kernel of the given geometry: a 1 at the centre tap linking output channel
 * o to input channel o (dense, Ci = Co) or to its own channel (depthwise, multiplier 1).
 */
export function identityKernel(kh: number, kw: number, channels: number, depthwise: boolean): tf.Tensor4D {
  const ch = Math.floor(kh / 2);
  const cw = Math.floor(kw / 2);
  if (depthwise) {
    const data = new Float32Array(kh * kw * channels);
    for (let c = 0; c < channels; c++) data[(ch * kw + cw) * channels + c] = 1;
    return tf.tensor4d(data, [kh, kw, channels, 1]);
  }
  const data = new Float32Array(kh * kw * channels * channels);
  for (let c = 0; c < channels; c++) data[((ch * kw + cw) * channels + c) * channels + c] = 1;
  return tf.tensor4d(data, [kh, kw, channels, channels]);
}

/** (b) A lone BN branch (identity) as a kernel + bias of the given geometry. */
export function foldBnIdentity(bn: BatchNorm2d, kh: number, kw: number, depthwise: boolean): KernelBias {
  return tf.tidy(() => {
    const t = bn.weight.mul(tf.rsqrt(bn.runningVar.add(bn.eps))) as tf.Tensor1D;
    const id = identityKernel(kh, kw, bn.numFeatures, depthwise);
    const w = scaleOutputChannels(id, t, depthwise);
    const b = bn.bias.sub(bn.runningMean.mul(t)) as tf.Tensor1D;
    return { w, b };
  });
}

/** (c) Zero-pads a kh'×kw' kernel to kh×kw (centred). */
export function padKernel(w: tf.Tensor4D, kh: number, kw: number): tf.Tensor4D {
  const [h, ww] = w.shape;
  const ph = (kh - h) / 2;
  const pw = (kw - ww) / 2;
  if (ph === 0 && pw === 0) return w.clone();
  return tf.pad(w, [
    [ph, ph],
    [pw, pw],
    [0, 0],
    [0, 0],
  ]);
}

/** Sums kernel/bias pairs (same geometry); the result never aliases an input. */
export function sumKernels(parts: KernelBias[]): KernelBias {
  return tf.tidy(() => {
    let w = parts[0].w.clone() as tf.Tensor4D;
    let b = parts[0].b.clone() as tf.Tensor1D;
    for (const p of parts.slice(1)) {
      w = w.add(p.w) as tf.Tensor4D;
      b = b.add(p.b) as tf.Tensor1D;
    }
    return { w, b };
  });
}

export function disposeKB(kb: KernelBias): void {
  kb.w.dispose();
  kb.b.dispose();
}
