import * as tf from '../tf.js';
import { Module } from '../nn/module.js';
import type { ForwardContext } from '../nn/context.js';
import { Initializer, full } from '../nn/init.js';
import { BatchNorm2d } from './batch-norm.js';
import { MHSA } from './mhsa.js';
import type { AttentionParams } from '../nn/attention.js';
import { ConvFFN } from './conv-ffn.js';
import { LayerNorm } from './layer-norm.js';

export interface AttentionBlockOptions {
  /** ConvFFN hidden width = ⌊dim·mlpRatio⌋ unless `hidden` is given. */
  mlpRatio?: number;
  hidden?: number;
  headDim?: number;
  /** Heads (default dim / headDim); heads × headDim need not equal dim. */
  heads?: number;
  /** Attention kernel name (default 'softmax'). */
  kernel?: string;
  /** Parameters of the kernel (default none). */
  kernelParams?: AttentionParams;
  /** LayerNorm on each head's q and k in the MHSA (`token_mixer.{q,k}_norm`; default false). */
  qkNorm?: boolean;
  /** LayerNorm over the channels of the MHSA output before γ₁ and the residual add (`attn_out_norm`, hybrid-norm; default false). */
  attnOutNorm?: boolean;
  layerScaleInit?: number;
  /** The pre-norm: BatchNorm (MCi0–2, the default) or a LayerNorm over the channels (timm's LayerNorm2d, fastvit_mci3/4). */
  norm?: 'batch' | 'layer';
  init?: Initializer;
}

/**
 * MCi AttentionBlock: x += γ₁ ⊙ MHSA(BN(x)); x += γ₂ ⊙ ConvFFN(x) (the pre-norm is BatchNorm). With
 * `attnOutNorm` (hybrid-norm), x += γ₁ ⊙ LN(MHSA(BN(x))), the LayerNorm over the channels at `attn_out_norm`.
 */
export class AttentionBlock extends Module {
  constructor(dim: number, opts: AttentionBlockOptions) {
    super();
    const init = opts.init ?? new Initializer(0);
    const ls = opts.layerScaleInit ?? 1e-5;
    const hidden = opts.hidden ?? Math.floor(dim * (opts.mlpRatio ?? 3));
    this.addParam('layer_scale_1', full([dim], ls), { torchShape: [dim, 1, 1], noDecay: false });
    this.addParam('layer_scale_2', full([dim], ls), { torchShape: [dim, 1, 1], noDecay: false });
    this.addModule('norm', opts.norm === 'layer' ? new LayerNorm(dim) : new BatchNorm2d(dim));
    this.addModule('token_mixer', new MHSA(dim, opts.headDim ?? 32, init, { heads: opts.heads, kernel: opts.kernel, kernelParams: opts.kernelParams, qkNorm: opts.qkNorm }));
    if (opts.attnOutNorm) this.addModule('attn_out_norm', new LayerNorm(dim));
    this.addModule('convffn', new ConvFFN(dim, hidden, dim, [7, 7], init));
  }

  get norm(): BatchNorm2d {
    return this.childAs('norm', BatchNorm2d);
  }

  /** The pre-norm, of either kind (`norm`: BatchNorm2d, or a channel LayerNorm in fastvit_mci3/4). */
  get preNorm(): BatchNorm2d | LayerNorm {
    const n = this.child('norm');
    return n instanceof LayerNorm ? n : this.norm;
  }

  get tokenMixer(): MHSA {
    return this.childAs('token_mixer', MHSA);
  }

  /** Hybrid-norm: the LayerNorm on the attention output (`attn_out_norm`), or null. */
  get attnOutNorm(): LayerNorm | null {
    return this.optionalChildAs('attn_out_norm', LayerNorm);
  }

  get convffn(): ConvFFN {
    return this.childAs('convffn', ConvFFN);
  }

  forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    return tf.tidy(() => {
      const g1 = this.param('layer_scale_1');
      const g2 = this.param('layer_scale_2');
      let a = this.sub('token_mixer').call(this.sub('norm').call(x, ctx), ctx);
      if (this.attnOutNorm) a = this.sub('attn_out_norm').call(a, ctx);
      const y = x.add(a.mul(g1));
      return y.add(this.convffn.scaledForward(y, g2 as tf.Tensor1D, ctx));
    });
  }
}
