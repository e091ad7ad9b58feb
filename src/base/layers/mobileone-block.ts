import * as tf from '../tf.js';
import { Module, Sequential } from '../nn/module.js';
import { gelu } from '../nn/functional.js';
import { Initializer } from '../nn/init.js';
import { Conv2d } from './conv2d.js';
import { BatchNorm2d } from './batch-norm.js';
import { ConvBn } from './conv-bn.js';
import { SEBlock } from './squeeze-excite.js';
import { disposeKB, foldBnIdentity, padKernel, sumKernels, type KernelBias } from './fuse.js';

export interface MobileOneOptions {
  stride?: number;
  /** [ph, pw]; defaults to ⌊k/2⌋. */
  padding?: [number, number];
  groups?: number;
  /** Build the fused inference form (a single biased `reparam_conv`). */
  inferenceMode?: boolean;
  useSe?: boolean;
  useAct?: boolean;
  useScaleBranch?: boolean;
  numConvBranches?: number;
  init?: Initializer;
}

/**
 * MobileOneBlock (official `mobileclip/modules/common/mobileone.py`):
 * act(se(Σ BN(conv_k(x)) + BN(conv_1x1(x)) + BN(x))) at train time, act(se(reparam_conv(x))) fused.
 * The 1×1 scale branch exists when the kernel height is > 1 (the text (1, 11) mixer has none);
 * the BN skip exists when in = out and stride = 1.
 */
export class MobileOneBlock extends Module {
  readonly inChannels: number;
  readonly outChannels: number;
  readonly kernel: [number, number];
  readonly stride: number;
  readonly padding: [number, number];
  readonly groups: number;
  readonly useAct: boolean;
  se: SEBlock | null = null;
  rbrSkip: BatchNorm2d | null = null;
  rbrConv: ConvBn[] = [];
  rbrScale: ConvBn | null = null;
  reparamConv: Conv2d | null = null;

  constructor(inC: number, outC: number, kernel: number | [number, number], opts: MobileOneOptions = {}) {
    super();
    const k: [number, number] = typeof kernel === 'number' ? [kernel, kernel] : kernel;
    this.inChannels = inC;
    this.outChannels = outC;
    this.kernel = k;
    this.stride = opts.stride ?? 1;
    this.padding = opts.padding ?? [Math.floor(k[0] / 2), Math.floor(k[1] / 2)];
    this.groups = opts.groups ?? 1;
    this.useAct = opts.useAct ?? true;
    const init = opts.init ?? new Initializer(0);
    if (opts.useSe) this.se = this.addModule('se', new SEBlock(outC, 0.0625, init));
    const convOpts = { stride: this.stride, padding: this.padding, groups: this.groups, init };
    if (opts.inferenceMode) {
      this.reparamConv = this.addModule('reparam_conv', new Conv2d(inC, outC, k, { ...convOpts, bias: true }));
      return;
    }
    if (inC === outC && this.stride === 1) this.rbrSkip = this.addModule('rbr_skip', new BatchNorm2d(inC));
    const nBranches = opts.numConvBranches ?? 1;
    if (nBranches > 0) {
      const list = new Sequential();
      for (let i = 0; i < nBranches; i++) {
        const b = new ConvBn(inC, outC, k, convOpts);
        list.push(b);
        this.rbrConv.push(b);
      }
      this.addModule('rbr_conv', list);
    }
    if ((opts.useScaleBranch ?? true) && k[0] > 1) {
      this.rbrScale = this.addModule('rbr_scale', new ConvBn(inC, outC, 1, { ...convOpts, padding: [0, 0] }));
    }
  }

  /** Branch sum before SE and activation. */
  preActivation(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      if (this.reparamConv) return this.reparamConv.call(x);
      let out: tf.Tensor | null = null;
      const add = (t: tf.Tensor) => {
        out = out ? out.add(t) : t;
      };
      if (this.rbrSkip) add(this.rbrSkip.call(x));
      if (this.rbrScale) add(this.rbrScale.call(x));
      for (const b of this.rbrConv) add(b.call(x));
      if (!out) throw new Error('MobileOneBlock has no branch');
      return out;
    });
  }

  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      let y = this.preActivation(x);
      if (this.se) y = this.se.call(y);
      return this.useAct ? gelu(y) : y;
    });
  }

  /** The fused kernel and bias (methods.md §1.7 (a)–(d)); works on either form. */
  fusedKernelBias(): KernelBias {
    if (this.reparamConv) {
      return { w: this.reparamConv.weight.clone() as tf.Tensor4D, b: (this.reparamConv.bias ?? tf.zeros([this.outChannels])).clone() as tf.Tensor1D };
    }
    const [kh, kw] = this.kernel;
    const depthwise = this.groups !== 1;
    const parts: KernelBias[] = [];
    for (const b of this.rbrConv) parts.push(b.fused());
    if (this.rbrScale) {
      const s = this.rbrScale.fused();
      parts.push({ w: padKernel(s.w, kh, kw), b: s.b });
      s.w.dispose();
    }
    if (this.rbrSkip) parts.push(foldBnIdentity(this.rbrSkip, kh, kw, depthwise));
    const out = sumKernels(parts);
    parts.forEach(disposeKB);
    return out;
  }

  override reparameterize(): void {
    if (this.reparamConv) return;
    const { w, b } = this.fusedKernelBias();
    const conv = new Conv2d(this.inChannels, this.outChannels, this.kernel, {
      stride: this.stride,
      padding: this.padding,
      groups: this.groups,
      bias: true,
    });
    conv.setWeights(w, b);
    this.removeModule('rbr_conv');
    this.removeModule('rbr_scale');
    this.removeModule('rbr_skip');
    this.rbrConv = [];
    this.rbrScale = null;
    this.rbrSkip = null;
    // Keep the official key order: se first, then reparam_conv.
    this.reparamConv = this.addModule('reparam_conv', conv);
  }
}

