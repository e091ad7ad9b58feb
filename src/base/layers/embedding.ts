import * as tf from '../tf.js';
import { Module } from '../nn/module.js';
import { Initializer } from '../nn/init.js';

/** torch.nn.Embedding: int32 ids [...] → [..., dim]. */
export class Embedding extends Module {
  readonly numEmbeddings: number;
  readonly dim: number;

  constructor(numEmbeddings: number, dim: number, init: Initializer = new Initializer(0)) {
    super();
    this.numEmbeddings = numEmbeddings;
    this.dim = dim;
    this.addParam('weight', init.normal([numEmbeddings, dim], dim ** -0.5));
  }

  get weight(): tf.Variable {
    return this.ownParams.get('weight')!.variable;
  }

  forward(ids: tf.Tensor): tf.Tensor {
    return tf.tidy(() => tf.gather(this.weight, ids.flatten().toInt()).reshape([...ids.shape, this.dim]));
  }
}
