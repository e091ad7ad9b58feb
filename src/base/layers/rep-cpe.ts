import * as tf from '../tf.js';
import { Module } from '../nn/module.js';
import { Initializer } from '../nn/init.js';
import { Conv2d } from './conv2d.js';
import { identityKernel } from './fuse.js';

/**
 * RepCPE conditional positional encoding: x + pe(x), pe a biased depthwise 7×7 conv; fused
 * into `reparam_conv` with the identity folded in (methods.md §1.7 (f)).
 */
export class RepCPE extends Module {
  readonly dim: number;
  readonly kernel: [number, number];
  pe: Conv2d | null = null;
  reparamConv: Conv2d | null = null;

  constructor(dim: number, opts: { kernel?: [number, number]; inferenceMode?: boolean; init?: Initializer } = {}) {
    super();
    this.dim = dim;
    this.kernel = opts.kernel ?? [7, 7];
    const p = Math.floor(this.kernel[0] / 2);
    const conv = new Conv2d(dim, dim, this.kernel, { groups: dim, bias: true, padding: [p, p], init: opts.init });
    if (opts.inferenceMode) this.reparamConv = this.addModule('reparam_conv', conv);
    else this.pe = this.addModule('pe', conv);
  }

  forward(x: tf.Tensor): tf.Tensor {
    if (this.reparamConv) return this.reparamConv.call(x);
    return tf.tidy(() => this.pe!.call(x).add(x));
  }

  override reparameterize(): void {
    if (this.reparamConv || !this.pe) return;
    const pe = this.pe;
    const w = tf.tidy(() => pe.weight.add(identityKernel(this.kernel[0], this.kernel[1], this.dim, true)));
    const b = pe.bias!.clone();
    const p = Math.floor(this.kernel[0] / 2);
    const conv = new Conv2d(this.dim, this.dim, this.kernel, { groups: this.dim, bias: true, padding: [p, p] });
    conv.setWeights(w, b);
    this.removeModule('pe');
    this.pe = null;
    this.reparamConv = this.addModule('reparam_conv', conv);
  }
}
