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
  constructor(dim: number, opts: { kernel?: [number, number]; inferenceMode?: boolean; init?: Initializer } = {}) {
    super();
    const kernel = opts.kernel ?? [7, 7];
    const p = Math.floor(kernel[0] / 2);
    const conv = new Conv2d(dim, dim, kernel, { groups: dim, bias: true, padding: [p, p], init: opts.init });
    this.addModule(opts.inferenceMode ? 'reparam_conv' : 'pe', conv);
  }

  get pe(): Conv2d | null {
    return this.optionalChildAs('pe', Conv2d);
  }

  get reparamConv(): Conv2d | null {
    return this.optionalChildAs('reparam_conv', Conv2d);
  }

  private conv(): Conv2d {
    const c = this.reparamConv ?? this.pe;
    if (!c) throw new Error('RepCPE has neither reparam_conv nor pe');
    return c;
  }

  /** Channels, from the depthwise conv's weight. */
  get dim(): number {
    return this.conv().inChannels;
  }

  /** Kernel, from the depthwise conv's weight. */
  get kernel(): [number, number] {
    return this.conv().kernel;
  }

  forward(x: tf.Tensor): tf.Tensor {
    const fused = this.child('reparam_conv');
    if (fused) return fused.call(x);
    return tf.tidy(() => this.sub('pe').call(x).add(x));
  }

  override reparameterize(): void {
    const pe = this.pe;
    if (this.reparamConv || !pe) return;
    const [kh, kw] = pe.kernel;
    const dim = pe.inChannels;
    const w = tf.tidy(() => pe.weight.add(identityKernel(kh, kw, dim, true)));
    const bias = pe.bias;
    if (!bias) throw new Error('RepCPE: pe has no bias');
    const b = bias.clone();
    const p = Math.floor(kh / 2);
    const conv = new Conv2d(dim, dim, [kh, kw], { groups: dim, bias: true, padding: [p, p] });
    conv.setWeights(w, b);
    this.removeModule('pe');
    this.addModule('reparam_conv', conv);
  }
}
