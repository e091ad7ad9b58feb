import * as tf from '../tf.js';
import { Module } from '../nn/module.js';
import { ones, zeros } from '../nn/init.js';
import { layerNorm } from '../nn/functional.js';

/** LayerNormFP32 (official `layer_norm_fp32`): LayerNorm over the last axis, eps 1e-5. */
export class LayerNorm extends Module {
  readonly eps: number;

  constructor(dim: number, eps = 1e-5) {
    super();
    this.eps = eps;
    this.addParam('weight', ones([dim]), { noDecay: true });
    this.addParam('bias', zeros([dim]), { noDecay: true });
  }

  /** Normalised width, from the weight [dim]. */
  get dim(): number {
    return this.param('weight').shape[0];
  }

  forward(x: tf.Tensor): tf.Tensor {
    return layerNorm(x, this.param('weight'), this.param('bias'), this.eps);
  }
}
