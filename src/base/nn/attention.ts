import * as tf from '../tf.js';
import { fastQkvSplit } from './fast-ops.js';

/**
 * The attention kernel: given q, k, v as [B, heads, N, d] (q already scaled) and an optional
 * additive mask [N, N], returns [B, heads, N, d]. Softmax attention by default; plug-ins (e.g.
 * sigmoid attention) replace it per module through `AttentionModule.attentionFn`.
 */
export type AttentionFn = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, mask: tf.Tensor2D | null) => tf.Tensor4D;

export const softmaxAttention: AttentionFn = (q, k, v, mask) =>
  tf.tidy(() => {
    let logits = tf.matMul(q, k, false, true);
    if (mask) logits = logits.add(mask);
    return tf.matMul(tf.softmax(logits), v) as tf.Tensor4D;
  });

/** Additive causal mask: 0 on and below the diagonal, -inf above. */
export function causalMask(n: number): tf.Tensor2D {
  const data = new Float32Array(n * n);
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) data[i * n + j] = -Infinity;
  return tf.tensor2d(data, [n, n]);
}

/**
 * Multi-head self-attention core shared by MHSA (image) and MultiHeadAttention (text/ViT):
 * x [B, N, C] → qkv [B, N, 3C] (laid out [3, heads, d]) → attention → [B, N, C].
 */
export function multiHeadSelfAttention(
  qkv: tf.Tensor,
  heads: number,
  scale: number,
  attentionFn: AttentionFn,
  mask: tf.Tensor2D | null,
): tf.Tensor3D {
  return tf.tidy(() => {
    const [b, n, c3] = qkv.shape;
    const c = c3 / 3;
    const d = c / heads;
    // wasm: one pass straight from qkv into q·scale, k, v (tfjs-wasm's Slice copies its whole input).
    let qkvParts = fastQkvSplit(qkv, heads, scale);
    if (qkvParts == null) {
      // One transpose to [3, B, heads, N, d], then contiguous slices (tf.unstack is slow on wasm).
      const t = qkv.reshape([b, n, 3, heads, d]).transpose([2, 0, 3, 1, 4]).reshape([3, b * heads * n * d]);
      const part = (i: number) => t.slice([i, 0], [1, b * heads * n * d]).reshape([b, heads, n, d]) as tf.Tensor4D;
      qkvParts = [part(0).mul(scale) as tf.Tensor4D, part(1), part(2)];
    }
    const [q, k, v] = qkvParts;
    const o = attentionFn(q, k, v, mask);
    return o.transpose([0, 2, 1, 3]).reshape([b, n, c]) as tf.Tensor3D;
  });
}
