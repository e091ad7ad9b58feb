import * as tf from '../tf.js';
import { Module, Sequential } from '../nn/module.js';
import { Initializer } from '../nn/init.js';
import { LayerNorm } from './layer-norm.js';
import { Linear } from './linear.js';
import { MultiHeadAttention } from './multi-head-attention.js';
import { Dropout, GELU } from './activations.js';

/**
 * Pre-norm TransformerEncoder (`base` text layers, the `mct` middle layers, ViT-B):
 * x += MHA(LN(x)); x += W₂·GELU(W₁·LN(x)). Child indices mirror the official
 * `pre_norm_mha.{0,1}` and `pre_norm_ffn.{0,1,4}`.
 */
export class TransformerEncoder extends Module {
  readonly preNormMha: Sequential;
  readonly preNormFfn: Sequential;
  readonly attn: MultiHeadAttention;

  constructor(embedDim: number, numHeads: number, ffnDim: number, init: Initializer = new Initializer(0)) {
    super();
    this.attn = new MultiHeadAttention(embedDim, numHeads, init);
    this.preNormMha = this.addModule('pre_norm_mha', new Sequential([new LayerNorm(embedDim), this.attn, new Dropout()]));
    this.preNormFfn = this.addModule(
      'pre_norm_ffn',
      new Sequential([new LayerNorm(embedDim), new Linear(embedDim, ffnDim, { init }), new GELU(), new Dropout(), new Linear(ffnDim, embedDim, { init }), new Dropout()]),
    );
  }

  get ffnDim(): number {
    return (this.preNormFfn.at(1) as Linear).outFeatures;
  }

  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const y = x.add(this.preNormMha.call(x));
      return y.add(this.preNormFfn.call(y));
    });
  }
}
