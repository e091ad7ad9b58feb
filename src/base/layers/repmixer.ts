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
  constructor(dim: number, kernel: [number, number], opts: { inferenceMode?: boolean; layerScaleInit?: number; init?: Initializer } = {}) {
    super();
    const padding: [number, number] = [Math.floor(kernel[0] / 2), Math.floor(kernel[1] / 2)];
    const init = opts.init ?? new Initializer(0);
    if (opts.inferenceMode) {
      this.addModule('reparam_conv', new Conv2d(dim, dim, kernel, { groups: dim, bias: true, padding, init }));
      return;
    }
    this.addParam('layer_scale', full([dim], opts.layerScaleInit ?? 1e-5), { torchShape: [dim, 1, 1], noDecay: false });
    const common = { padding, groups: dim, useAct: false, init };
    this.addModule('norm', new MobileOneBlock(dim, dim, kernel, { ...common, useScaleBranch: false, numConvBranches: 0 }));
    this.addModule('mixer', new MobileOneBlock(dim, dim, kernel, common));
  }

  get mixer(): MobileOneBlock | null {
    return this.optionalChildAs('mixer', MobileOneBlock);
  }

  get norm(): MobileOneBlock | null {
    return this.optionalChildAs('norm', MobileOneBlock);
  }

  get reparamConv(): Conv2d | null {
    return this.optionalChildAs('reparam_conv', Conv2d);
  }

  /** Channels, from `reparam_conv` (fused) or the mixer. */
  get dim(): number {
    const c = this.reparamConv ?? this.mixer;
    if (!c) throw new Error('RepMixer has neither reparam_conv nor mixer');
    return c.inChannels;
  }

  /** Depthwise kernel, from `reparam_conv` (fused) or the mixer's conv branch. */
  get kernel(): [number, number] {
    const c = this.reparamConv ?? this.mixer;
    if (!c) throw new Error('RepMixer has neither reparam_conv nor mixer');
    return c.kernel;
  }

  /** Same-size padding ⌊k/2⌋. */
  get padding(): [number, number] {
    const [kh, kw] = this.kernel;
    return [Math.floor(kh / 2), Math.floor(kw / 2)];
  }

  get layerScale(): tf.Variable {
    return this.param('layer_scale');
  }

  forward(x: tf.Tensor): tf.Tensor {
    const fused = this.child('reparam_conv');
    if (fused) return fused.call(x);
    return tf.tidy(() => x.add(this.sub('mixer').call(x).sub(this.sub('norm').call(x)).mul(this.layerScale)));
  }

  override reparameterize(): void {
    if (this.reparamConv) return;
    const mixer = this.mixer;
    const norm = this.norm;
    if (!mixer || !norm) throw new Error('RepMixer: mixer and norm are needed to fuse');
    const kernel = this.kernel;
    const padding = this.padding;
    const dim = this.dim;
    const [kh, kw] = kernel;
    const m = mixer.fusedKernelBias();
    const n = norm.fusedKernelBias();
    const { w, b } = tf.tidy(() => {
      const g = this.layerScale as tf.Tensor1D;
      const w = identityKernel(kh, kw, dim, true).add(scaleOutputChannels(m.w.sub(n.w) as tf.Tensor4D, g, true)) as tf.Tensor4D;
      const b = m.b.sub(n.b).mul(g) as tf.Tensor1D;
      return { w, b };
    });
    disposeKB(m);
    disposeKB(n);
    const conv = new Conv2d(dim, dim, kernel, { groups: dim, bias: true, padding });
    conv.setWeights(w, b);
    this.removeModule('mixer');
    this.removeModule('norm');
    this.removeParam('layer_scale');
    this.addModule('reparam_conv', conv);
  }
}
