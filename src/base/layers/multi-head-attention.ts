import * as tf from '../tf.js';
import { Module } from '../nn/module.js';
import { Initializer } from '../nn/init.js';
import { Linear } from './linear.js';
import { causalMask, multiHeadSelfAttention, softmaxAttention, type AttentionFn } from '../nn/attention.js';

/**
 * MultiHeadAttention of the text towers and ViT-B (`modules/common/transformer.py`):
 * biased qkv_proj laid out [3, heads, d], scale d^-1/2, optional causal mask, softmax, out_proj.
 */
export class MultiHeadAttention extends Module {
  readonly embedDim: number;
  readonly numHeads: number;
  readonly qkvProj: Linear;
  readonly outProj: Linear;
  causal = false;
  attentionFn: AttentionFn = softmaxAttention;

  constructor(embedDim: number, numHeads: number, init: Initializer = new Initializer(0)) {
    super();
    this.embedDim = embedDim;
    this.numHeads = numHeads;
    this.qkvProj = this.addModule('qkv_proj', new Linear(embedDim, embedDim * 3, { bias: true, init }));
    this.outProj = this.addModule('out_proj', new Linear(embedDim, embedDim, { bias: true, init }));
  }

  get headDim(): number {
    return this.qkvProj.outFeatures / 3 / this.numHeads;
  }

  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const n = x.shape[1] as number;
      const mask = this.causal ? causalMask(n) : null;
      const o = multiHeadSelfAttention(this.qkvProj.call(x), this.numHeads, this.headDim ** -0.5, this.attentionFn, mask);
      return this.outProj.call(o);
    });
  }
}
