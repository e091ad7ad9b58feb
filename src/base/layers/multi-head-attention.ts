import * as tf from '../tf.js';
import { Module } from '../nn/module.js';
import type { ForwardContext } from '../nn/context.js';
import { Initializer } from '../nn/init.js';
import { Linear } from './linear.js';
import { Identity } from './identity.js';
import { LayerNorm } from './layer-norm.js';
import { attentionKernel, causalMask, multiHeadSelfAttention, type AttentionKernel, type AttentionParams } from '../nn/attention.js';

/**
 * MultiHeadAttention of the text towers and ViT-B (`modules/common/transformer.py`):
 * biased qkv_proj laid out [3, heads, d], scale d^-1/2, optional causal mask, the attention kernel
 * (softmax unless configured otherwise), out_proj. The inner width heads·d is free: qkv_proj maps the
 * residual width to 3·heads·d and out_proj maps heads·d back (TinyCLIP-pruned layers).
 * The attention weights pass through the child `attn_probs` (an Identity), where a hook can read them.
 * With `qkNorm`, LayerNorms `q_norm` / `k_norm` (over the head width, shared by the heads) normalise each
 * head's q and k before the scale.
 */
export class MultiHeadAttention extends Module {
  /** Number of heads: a structural choice (the weights fix only heads·d). */
  readonly numHeads: number;
  causal = false;
  /** Name of the attention kernel (`registerAttentionKernel`). */
  kernelName: string;
  /** Parameters of the kernel (e.g. sigmoid attention's bias); empty for softmax. */
  kernelParams: AttentionParams;

  constructor(
    embedDim: number,
    numHeads: number,
    init: Initializer = new Initializer(0),
    opts: { headDim?: number; kernel?: string; kernelParams?: AttentionParams; qkNorm?: boolean } = {},
  ) {
    super();
    this.numHeads = numHeads;
    this.kernelName = opts.kernel ?? 'softmax';
    this.kernelParams = { ...(opts.kernelParams ?? {}) };
    const inner = numHeads * (opts.headDim ?? embedDim / numHeads);
    if (!Number.isInteger(inner) || inner <= 0) throw new Error(`MultiHeadAttention: ${numHeads} heads do not divide width ${embedDim}`);
    this.addModule('qkv_proj', new Linear(embedDim, inner * 3, { bias: true, init }));
    this.addModule('out_proj', new Linear(inner, embedDim, { bias: true, init }));
    this.addModule('attn_probs', new Identity());
    if (opts.qkNorm) {
      this.addModule('q_norm', new LayerNorm(inner / numHeads));
      this.addModule('k_norm', new LayerNorm(inner / numHeads));
    }
  }

  /** QK-norm: LayerNorms on each head's q and k over the head width (`q_norm`, `k_norm`), or null. */
  get qkNorm(): { q: LayerNorm; k: LayerNorm } | null {
    const q = this.optionalChildAs('q_norm', LayerNorm);
    const k = this.optionalChildAs('k_norm', LayerNorm);
    return q && k ? { q, k } : null;
  }

  get qkvProj(): Linear {
    return this.childAs('qkv_proj', Linear);
  }

  get outProj(): Linear {
    return this.childAs('out_proj', Linear);
  }

  /** Residual width (read by qkv_proj, written by out_proj). */
  get embedDim(): number {
    return this.qkvProj.inFeatures;
  }

  /** heads·d. */
  get innerDim(): number {
    return this.qkvProj.outFeatures / 3;
  }

  get headDim(): number {
    return this.innerDim / this.numHeads;
  }

  get kernel(): AttentionKernel {
    return attentionKernel(this.kernelName);
  }

  forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    return tf.tidy(() => {
      const n = x.shape[1] as number;
      const mask = this.causal ? causalMask(n) : null;
      const site = this.sub('attn_probs');
      const qk = this.qkNorm
        ? (q: tf.Tensor4D, k: tf.Tensor4D): [tf.Tensor4D, tf.Tensor4D] => [this.sub('q_norm').call(q, ctx) as tf.Tensor4D, this.sub('k_norm').call(k, ctx) as tf.Tensor4D]
        : null;
      const probs = (p: tf.Tensor4D) => site.call(p, ctx) as tf.Tensor4D;
      const o = multiHeadSelfAttention(this.sub('qkv_proj').call(x, ctx), this.numHeads, this.headDim ** -0.5, this.kernel, mask, probs, { params: this.kernelParams, ctx }, qk);
      return this.sub('out_proj').call(o, ctx);
    });
  }
}
