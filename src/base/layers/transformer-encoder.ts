import * as tf from '../tf.js';
import { Module, Sequential } from '../nn/module.js';
import type { ForwardContext } from '../nn/context.js';
import { Initializer } from '../nn/init.js';
import { LayerNorm } from './layer-norm.js';
import { Linear } from './linear.js';
import { MultiHeadAttention } from './multi-head-attention.js';
import { Dropout, GELU } from './activations.js';

export interface TransformerEncoderOptions {
  /** Head width (default embedDim / numHeads); heads × headDim need not equal embedDim. */
  headDim?: number;
  /** Attention kernel name (default 'softmax'). */
  kernel?: string;
}

/**
 * Pre-norm TransformerEncoder (`base` text layers, the `mct` middle layers, ViT-B):
 * x += MHA(LN(x)); x += W₂·GELU(W₁·LN(x)). Child indices mirror the official
 * `pre_norm_mha.{0,1}` and `pre_norm_ffn.{0,1,4}`.
 */
export class TransformerEncoder extends Module {
  constructor(embedDim: number, numHeads: number, ffnDim: number, init: Initializer = new Initializer(0), opts: TransformerEncoderOptions = {}) {
    super();
    const attn = new MultiHeadAttention(embedDim, numHeads, init, { headDim: opts.headDim, kernel: opts.kernel });
    this.addModule('pre_norm_mha', new Sequential([new LayerNorm(embedDim), attn, new Dropout()]));
    this.addModule(
      'pre_norm_ffn',
      new Sequential([new LayerNorm(embedDim), new Linear(embedDim, ffnDim, { init }), new GELU(), new Dropout(), new Linear(ffnDim, embedDim, { init }), new Dropout()]),
    );
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
      const y = x.add(this.preNormMha.call(x, ctx));
      return y.add(this.preNormFfn.call(y, ctx));
    });
  }
}
