import * as tf from '../tf.js';
import { Module } from '../nn/module.js';
import { Initializer } from '../nn/init.js';
import { Linear } from './linear.js';
import { multiHeadSelfAttention, softmaxAttention, type AttentionFn } from '../nn/attention.js';

/**
 * MCi stage-4 MHSA on NHWC maps: tokens = row-major flatten of H×W, qkv without bias,
 * heads = C / headDim, scale headDim^-1/2, biased output projection.
 */
export class MHSA extends Module {
  readonly dim: number;
  readonly headDim: number;
  readonly qkv: Linear;
  readonly proj: Linear;
  attentionFn: AttentionFn = softmaxAttention;

  constructor(dim: number, headDim = 32, init: Initializer = new Initializer(0)) {
    super();
    this.dim = dim;
    this.headDim = headDim;
    this.qkv = this.addModule('qkv', new Linear(dim, dim * 3, { bias: false, init }));
    this.proj = this.addModule('proj', new Linear(dim, dim, { bias: true, init }));
  }

  get numHeads(): number {
    return this.qkv.outFeatures / 3 / this.headDim;
  }

  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const [b, h, w, c] = x.shape;
      const tokens = x.reshape([b, h * w, c]);
      const o = multiHeadSelfAttention(this.qkv.call(tokens), this.numHeads, this.headDim ** -0.5, this.attentionFn, null);
      return this.proj.call(o).reshape([b, h, w, this.proj.outFeatures]);
    });
  }
}
