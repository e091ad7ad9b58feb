import type * as tf from '../tf.js';
import { Module } from '../nn/module.js';
import { full } from '../nn/init.js';

/**
 * LayerScale: a learned per-channel gain `gamma` [C] on the last axis (a residual branch's small initial
 * gain, e.g. 1e-4). Among a transformer layer's attention children it is `pre_norm_mha.3`.
 */
export class LayerScale extends Module {
  constructor(dim: number, init: number) {
    super();
    this.addParam('gamma', full([dim], init));
  }

  get gamma(): tf.Variable {
    return this.param('gamma');
  }

  forward(x: tf.Tensor): tf.Tensor {
    return x.mul(this.gamma);
  }
}
