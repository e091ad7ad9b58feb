import * as tf from '../tf.js';
import { Module } from '../nn/module.js';
import { gelu } from '../nn/functional.js';

/** nn.GELU() (exact erf form). Parameter-free; exists so Sequential indices match the official ones. */
export class GELU extends Module {
  forward(x: tf.Tensor): tf.Tensor {
    return gelu(x);
  }
}

/** nn.Dropout at p = 0 / eval: identity. Parameter-free placeholder keeping official indices. */
export class Dropout extends Module {
  forward(x: tf.Tensor): tf.Tensor {
    return x;
  }
}
