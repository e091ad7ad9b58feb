import * as tf from '../tf.js';
import { Module } from '../nn/module.js';
import { Initializer, full } from '../nn/init.js';
import { Conv2d } from './conv2d.js';
import { MobileOneBlock } from './mobileone-block.js';
import { disposeKB, identityKernel, scaleOutputChannels } from './fuse.js';

/**
 * RepMixer token mixer: x + γ ⊙ (mixer(x) − norm(x)) with a depthwise k×k (image, k = 3) or
 * 1×11 (text) MobileOne mixer and a BN-only `norm`. Fused: one depthwise conv `reparam_conv`
 * whose kernel is I + γ(W_mixer − W_norm) (methods.md §1.7 (e)).
 */
export class RepMixer extends Module {
  readonly dim: number;
  readonly kernel: [number, number];
  readonly padding: [number, number];
  mixer: MobileOneBlock | null = null;
  norm: MobileOneBlock | null = null;
  reparamConv: Conv2d | null = null;

  constructor(dim: number, kernel: [number, number], opts: { inferenceMode?: boolean; layerScaleInit?: number; init?: Initializer } = {}) {
    super();
    this.dim = dim;
    this.kernel = kernel;
    this.padding = [Math.floor(kernel[0] / 2), Math.floor(kernel[1] / 2)];
    const init = opts.init ?? new Initializer(0);
    if (opts.inferenceMode) {
      this.reparamConv = this.addModule('reparam_conv', new Conv2d(dim, dim, kernel, { groups: dim, bias: true, padding: this.padding, init }));
      return;
    }
    this.addParam('layer_scale', full([dim], opts.layerScaleInit ?? 1e-5), { torchShape: [dim, 1, 1], noDecay: false });
    const common = { padding: this.padding, groups: dim, useAct: false, init };
    this.norm = this.addModule('norm', new MobileOneBlock(dim, dim, kernel, { ...common, useScaleBranch: false, numConvBranches: 0 }));
    this.mixer = this.addModule('mixer', new MobileOneBlock(dim, dim, kernel, common));
  }

  get layerScale(): tf.Variable {
    return this.ownParams.get('layer_scale')!.variable;
  }

  forward(x: tf.Tensor): tf.Tensor {
    if (this.reparamConv) return this.reparamConv.call(x);
    return tf.tidy(() => x.add(this.mixer!.call(x).sub(this.norm!.call(x)).mul(this.layerScale)));
  }

  override reparameterize(): void {
    if (this.reparamConv) return;
    const [kh, kw] = this.kernel;
    const m = this.mixer!.fusedKernelBias();
    const n = this.norm!.fusedKernelBias();
    const { w, b } = tf.tidy(() => {
      const g = this.layerScale as tf.Tensor1D;
      const w = identityKernel(kh, kw, this.dim, true).add(scaleOutputChannels(m.w.sub(n.w) as tf.Tensor4D, g, true)) as tf.Tensor4D;
      const b = m.b.sub(n.b).mul(g) as tf.Tensor1D;
      return { w, b };
    });
    disposeKB(m);
    disposeKB(n);
    const conv = new Conv2d(this.dim, this.dim, this.kernel, { groups: this.dim, bias: true, padding: this.padding });
    conv.setWeights(w, b);
    this.removeModule('mixer');
    this.removeModule('norm');
    this.removeParam('layer_scale');
    this.mixer = null;
    this.norm = null;
    this.reparamConv = this.addModule('reparam_conv', conv);
  }
}
