import * as tf from '../tf.js';
import { Module, Sequential } from '../nn/module.js';
import type { ForwardContext } from '../nn/context.js';
import { Initializer } from '../nn/init.js';
import { LayerNorm } from './layer-norm.js';
import { Linear } from './linear.js';
import { MultiHeadAttention } from './multi-head-attention.js';
import { Dropout, GELU } from './activations.js';
import { Identity } from './identity.js';
import { LayerScale } from './layer-scale.js';
import type { AttentionParams } from '../nn/attention.js';

export interface TransformerEncoderOptions {
  /** Head width (default embedDim / numHeads); heads × headDim need not equal embedDim. */
  headDim?: number;
  /** Attention kernel name (default 'softmax'). */
  kernel?: string;
  /** Parameters of the kernel (default none). */
  kernelParams?: AttentionParams;
  /** LayerNorm on each head's q and k (default false). */
  qkNorm?: boolean;
  /** LayerNorm on the attention output before the residual add, as `pre_norm_mha.2` (default: a Dropout there). */
  attnOutNorm?: boolean;
  /** LayerScale on the attention residual, as `pre_norm_mha.3`, with this initial gain (default none). */
  attnLayerScale?: number;
}

/**
 * Pre-norm TransformerEncoder (`base` text layers, the `mct` middle layers, ViT-B):
 * x += MHA(LN(x)); x += W₂·GELU(W₁·LN(x)). Optional: hybrid-norm (`attnOutNorm`, x += LN′(MHA(LN(x))) with
 * LN′ at `pre_norm_mha.2`) and LayerScale on the attention residual (`attnLayerScale`, x += γ ⊙ … with γ at
 * `pre_norm_mha.3`). Child indices mirror the official `pre_norm_mha.{0,1}` and `pre_norm_ffn.{0,1,4}`. The hidden states between the two residual blocks pass
 * through the child `after_attention` (an Identity, no parameters): a hook there may read or replace them —
 * the site of a token reducer (PuMer / ToMe: after the attention residual, before the FFN), so the FFN and
 * its residual run on what the hook returns.
 */
export class TransformerEncoder extends Module {
  constructor(embedDim: number, numHeads: number, ffnDim: number, init: Initializer = new Initializer(0), opts: TransformerEncoderOptions = {}) {
    super();
    const attn = new MultiHeadAttention(embedDim, numHeads, init, { headDim: opts.headDim, kernel: opts.kernel, kernelParams: opts.kernelParams, qkNorm: opts.qkNorm });
    const mha = [new LayerNorm(embedDim), attn, opts.attnOutNorm ? new LayerNorm(embedDim) : new Dropout()];
    if (opts.attnLayerScale !== undefined) mha.push(new LayerScale(embedDim, opts.attnLayerScale));
    this.addModule('pre_norm_mha', new Sequential(mha));
    this.addModule(
      'pre_norm_ffn',
      new Sequential([new LayerNorm(embedDim), new Linear(embedDim, ffnDim, { init }), new GELU(), new Dropout(), new Linear(ffnDim, embedDim, { init }), new Dropout()]),
    );
    this.addModule('after_attention', new Identity());
  }

  get preNormMha(): Sequential {
    return this.childAs('pre_norm_mha', Sequential);
  }

  get preNormFfn(): Sequential {
    return this.childAs('pre_norm_ffn', Sequential);
  }

  /** The attention module (`pre_norm_mha.1`). */
  get attn(): MultiHeadAttention {
    const m = this.preNormMha.at(1);
    if (!(m instanceof MultiHeadAttention)) throw new Error(`pre_norm_mha.1 is a ${m.constructor.name}, expected a MultiHeadAttention`);
    return m;
  }

  get ffnDim(): number {
    const fc1 = this.preNormFfn.at(1);
    if (!(fc1 instanceof Linear)) throw new Error(`pre_norm_ffn.1 is a ${fc1.constructor.name}, expected a Linear`);
    return fc1.outFeatures;
  }

  forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    return tf.tidy(() => {
      const y = this.sub('after_attention').call(x.add(this.preNormMha.call(x, ctx)), ctx);
      return y.add(this.preNormFfn.call(y, ctx));
    });
  }
}
