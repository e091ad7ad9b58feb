import * as tf from '../tf.js';
import { MclipError } from '../../errors.js';
import { fastQkvSplit } from './fast-ops.js';
import type { ForwardContext } from './context.js';

/**
 * Numeric parameters of an attention kernel that no weight shape fixes (e.g. sigmoid attention's logit
 * bias). A module holds them next to its kernel name (`kernelParams`), configs record them per layer
 * (`attentionParams`), and export receives them, so training, inference and the exported graph agree.
 */
export type AttentionParams = Readonly<Record<string, number>>;

/** What a kernel is called with besides q, k, v: its parameters and the forward context (if any). */
export interface AttentionCall {
  readonly params: AttentionParams;
  /** The forward context of the pass (a kernel may read per-forward state, e.g. token sizes). */
  readonly ctx?: ForwardContext;
}

/**
 * An attention kernel, by name: given q, k, v as [B, heads, N, d] (q already scaled) and an optional
 * additive mask [N, N], returns [B, heads, N, d]. `probs` is the hook site of the attention weights
 * [B, heads, N, N]: a kernel passes its weights through it and uses what it returns (a hook may read or
 * replace them). Softmax is built in; a plug-in (e.g. sigmoid attention) registers its own kernel under a
 * new name, and config, export and cost find out which kernel a module uses from that name. `call` carries
 * the module's kernel parameters and the forward context (a kernel that needs neither ignores it).
 */
export interface AttentionKernel {
  readonly name: string;
  apply(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, mask: tf.Tensor2D | null, probs: (p: tf.Tensor4D) => tf.Tensor4D, call?: AttentionCall): tf.Tensor4D;
}

/** softmax(q·kᵀ + mask)·v. */
export const softmaxKernel: AttentionKernel = {
  name: 'softmax',
  apply: (q, k, v, mask, probs) =>
    tf.tidy(() => {
      let logits = tf.matMul(q, k, false, true);
      if (mask) logits = logits.add(mask);
      return tf.matMul(probs(tf.softmax(logits) as tf.Tensor4D), v) as tf.Tensor4D;
    }),
};

const kernels = new Map<string, AttentionKernel>([[softmaxKernel.name, softmaxKernel]]);

/** Registers an attention kernel under its name (a plug-in calls this once, at import). */
export function registerAttentionKernel(kernel: AttentionKernel): void {
  const old = kernels.get(kernel.name);
  if (old && old !== kernel) throw new MclipError(`attention kernel '${kernel.name}' is already registered`);
  kernels.set(kernel.name, kernel);
}

/** The kernel registered as `name`; throws naming the known kernels. */
export function attentionKernel(name: string): AttentionKernel {
  const k = kernels.get(name);
  if (!k) throw new MclipError(`unknown attention kernel '${name}' (registered: ${attentionKernelNames().join(', ')})`);
  return k;
}

export function attentionKernelNames(): string[] {
  return [...kernels.keys()];
}

/** Additive causal mask: 0 on and below the diagonal, -inf above. */
export function causalMask(n: number): tf.Tensor2D {
  const data = new Float32Array(n * n);
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) data[i * n + j] = -Infinity;
  return tf.tensor2d(data, [n, n]);
}

/**
 * Multi-head self-attention core shared by MHSA (image) and MultiHeadAttention (text/ViT):
 * qkv [B, N, 3·heads·d] (laid out [3, heads, d]) → kernel → [B, N, heads·d]. The inner width heads·d
 * need not equal the residual width. `qk` (optional, e.g. QK-norm) maps the unscaled per-head q and k
 * [B, heads, N, d] before q is scaled.
 */
export function multiHeadSelfAttention(
  qkv: tf.Tensor,
  heads: number,
  scale: number,
  kernel: AttentionKernel,
  mask: tf.Tensor2D | null,
  probs: (p: tf.Tensor4D) => tf.Tensor4D = (p) => p,
  call: AttentionCall = { params: {} },
  qk: ((q: tf.Tensor4D, k: tf.Tensor4D) => [tf.Tensor4D, tf.Tensor4D]) | null = null,
): tf.Tensor3D {
  return tf.tidy(() => {
    const [b, n, c3] = qkv.shape;
    const c = c3 / 3;
    const d = c / heads;
    // wasm: one pass straight from qkv into q·scale, k, v (tfjs-wasm's Slice copies its whole input).
    const splitScale = qk ? 1 : scale;
    let qkvParts = fastQkvSplit(qkv, heads, splitScale);
    if (qkvParts == null) {
      // One transpose to [3, B, heads, N, d], then contiguous slices (tf.unstack is slow on wasm).
      const t = qkv.reshape([b, n, 3, heads, d]).transpose([2, 0, 3, 1, 4]).reshape([3, b * heads * n * d]);
      const part = (i: number) => t.slice([i, 0], [1, b * heads * n * d]).reshape([b, heads, n, d]) as tf.Tensor4D;
      qkvParts = [part(0).mul(splitScale) as tf.Tensor4D, part(1), part(2)];
    }
    let [q, k] = qkvParts;
    const v = qkvParts[2];
    if (qk) {
      [q, k] = qk(q, k);
      q = q.mul(scale) as tf.Tensor4D;
    }
    const o = kernel.apply(q, k, v, mask, probs, call);
    return o.transpose([0, 2, 1, 3]).reshape([b, n, c]) as tf.Tensor3D;
  });
}
