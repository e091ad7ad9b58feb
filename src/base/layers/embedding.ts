import * as tf from '../tf.js';
import { Module } from '../nn/module.js';
import { Initializer } from '../nn/init.js';

/** torch.nn.Embedding: int32 ids [...] → [..., dim]. */
export class Embedding extends Module {
  constructor(numEmbeddings: number, dim: number, init: Initializer = new Initializer(0)) {
    super();
    this.addParam('weight', init.normal([numEmbeddings, dim], dim ** -0.5));
  }

  /** From the weight [N, dim]. */
  get numEmbeddings(): number {
    return (this.weight as tf.Tensor2D).shape[0];
  }

  /** From the weight [N, dim]. */
  get dim(): number {
    return (this.weight as tf.Tensor2D).shape[1];
  }

  get weight(): tf.Variable {
    return this.param('weight');
  }

  forward(ids: tf.Tensor): tf.Tensor {
    return tf.tidy(() => tf.gather(this.weight, ids.flatten().toInt()).reshape([...ids.shape, this.dim]));
  }
}
