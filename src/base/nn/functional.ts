import * as tf from '../tf.js';
import { fastGelu, fastLayerNorm } from './fast-ops.js';

const SQRT1_2 = Math.SQRT1_2;

/** Exact (erf) GELU, as torch.nn.GELU(). */
export function gelu(x: tf.Tensor): tf.Tensor {
  // wasm: one SIMD pass (tf.erf is a slow scalar loop there); same values to ~1e-7.
  const fast = fastGelu(x);
  if (fast != null) return fast;
  return tf.tidy(() => x.mul(tf.erf(x.mul(SQRT1_2)).add(1)).mul(0.5));
}

/** LayerNorm over the last axis (computed in float32; eps 1e-5 like LayerNormFP32). */
export function layerNorm(x: tf.Tensor, weight: tf.Tensor, bias: tf.Tensor, eps = 1e-5): tf.Tensor {
  // wasm: one SIMD kernel instead of nine small ops (same two-pass mean / biased variance).
  const fast = fastLayerNorm(x, weight, bias, eps);
  if (fast != null) return fast;
  return tf.tidy(() => {
    const axis = x.rank - 1;
    const mean = x.mean(axis, true);
    const xc = x.sub(mean);
    const variance = xc.square().mean(axis, true);
    return xc.mul(tf.rsqrt(variance.add(eps))).mul(weight).add(bias);
  });
}

/** x @ w (+ b) over the last axis, with w in TF.js layout [in, out]. */
export function linear(x: tf.Tensor, w: tf.Tensor, b?: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const inDim = x.shape[x.rank - 1] as number;
    const outDim = w.shape[1] as number;
    const lead = x.shape.slice(0, -1);
    let y = tf.matMul(x.reshape([-1, inDim]) as tf.Tensor2D, w as tf.Tensor2D);
    if (b) y = y.add(b);
    return y.reshape([...lead, outDim]);
  });
}

export type Padding2D = [[number, number], [number, number], [number, number], [number, number]];

/** Explicit symmetric NHWC padding as PyTorch's Conv2d(padding=(ph, pw)). */
export function torchPadding(ph: number, pw: number): Padding2D | 'valid' {
  if (ph === 0 && pw === 0) return 'valid';
  return [
    [0, 0],
    [ph, ph],
    [pw, pw],
    [0, 0],
  ];
}
