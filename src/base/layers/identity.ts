import type * as tf from '../tf.js';
import { Module } from '../nn/module.js';

/**
 * nn.Identity: returns its input. Used as a named hook site (e.g. `attn_probs`, the attention weights
 * of an attention module), so a hook can read or replace a value that is not a module's output.
 */
export class Identity extends Module {
  forward(x: tf.Tensor): tf.Tensor {
    return x;
  }
}
