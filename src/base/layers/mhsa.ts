import * as tf from '../tf.js';
import { Module } from '../nn/module.js';
import type { ForwardContext } from '../nn/context.js';
import { Initializer } from '../nn/init.js';
import { Linear } from './linear.js';
import { Identity } from './identity.js';
import { LayerNorm } from './layer-norm.js';
import { attentionKernel, multiHeadSelfAttention, type AttentionKernel, type AttentionParams } from '../nn/attention.js';

/**
 * MCi stage-4 MHSA on NHWC maps: tokens = row-major flatten of H×W, qkv without bias (C → 3·heads·d),
 * scale d^-1/2, the attention kernel (softmax by default), biased output projection heads·d → C.
 * Officially heads = C / 32; the inner width heads·d is free (pruned models). The attention weights
 * pass through the child `attn_probs`. With `qkNorm`, LayerNorms `q_norm` / `k_norm` (over the head width,
 * shared by the heads) normalise each head's q and k before the scale, as in MultiHeadAttention.
 */
export class MHSA extends Module {
  /** Head width: a structural choice (the weights fix only heads·d). */
  readonly headDim: number;
  /** Name of the attention kernel (`registerAttentionKernel`). */
  kernelName: string;
  /** Parameters of the kernel (e.g. sigmoid attention's bias); empty for softmax. */
  kernelParams: AttentionParams;

  constructor(dim: number, headDim = 32, init: Initializer = new Initializer(0), opts: { heads?: number; kernel?: string; kernelParams?: AttentionParams; qkNorm?: boolean } = {}) {
    super();
    this.headDim = headDim;
    this.kernelName = opts.kernel ?? 'softmax';
    this.kernelParams = { ...(opts.kernelParams ?? {}) };
    const inner = (opts.heads ?? dim / headDim) * headDim;
    if (!Number.isInteger(inner / headDim) || inner <= 0) throw new Error(`MHSA: head width ${headDim} does not divide width ${dim}`);
    this.addModule('qkv', new Linear(dim, inner * 3, { bias: false, init }));
    this.addModule('proj', new Linear(inner, dim, { bias: true, init }));
    this.addModule('attn_probs', new Identity());
    if (opts.qkNorm) {
      this.addModule('q_norm', new LayerNorm(headDim));
      this.addModule('k_norm', new LayerNorm(headDim));
    }
  }

  /** QK-norm: LayerNorms on each head's q and k over the head width (`q_norm`, `k_norm`), or null. */
  get qkNorm(): { q: LayerNorm; k: LayerNorm } | null {
    const q = this.optionalChildAs('q_norm', LayerNorm);
    const k = this.optionalChildAs('k_norm', LayerNorm);
    return q && k ? { q, k } : null;
  }

  get qkv(): Linear {
    return this.childAs('qkv', Linear);
  }

  get proj(): Linear {
    return this.childAs('proj', Linear);
  }

  /** Residual width. */
  get dim(): number {
    return this.qkv.inFeatures;
  }

  get numHeads(): number {
    return this.qkv.outFeatures / 3 / this.headDim;
  }

  get kernel(): AttentionKernel {
    return attentionKernel(this.kernelName);
  }

  forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    return tf.tidy(() => {
      const [b, h, w, c] = x.shape;
      const tokens = x.reshape([b, h * w, c]);
      const site = this.sub('attn_probs');
      const probs = (p: tf.Tensor4D) => site.call(p, ctx) as tf.Tensor4D;
      const qk = this.qkNorm
        ? (q: tf.Tensor4D, k: tf.Tensor4D): [tf.Tensor4D, tf.Tensor4D] => [this.sub('q_norm').call(q, ctx) as tf.Tensor4D, this.sub('k_norm').call(k, ctx) as tf.Tensor4D]
        : null;
      const o = multiHeadSelfAttention(this.sub('qkv').call(tokens, ctx), this.numHeads, this.headDim ** -0.5, this.kernel, null, probs, { params: this.kernelParams, ctx }, qk);
      const y = this.sub('proj').call(o, ctx);
      return y.reshape([b, h, w, y.shape[2] as number]);
    });
  }
}
