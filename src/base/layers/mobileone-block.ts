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
  /** SE hidden width when not the default (a pruned model). */
  seWidth?: number;
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
  readonly stride: number;
  readonly padding: [number, number];
  readonly useAct: boolean;
  /** groups = C_in (true) or 1; only read when no conv fixes it (a BN-only block). */
  private readonly depthwiseHint: boolean;
  /** Kernel geometry; only read when no k×k conv fixes it (a BN-only or 1×1-only block). */
  private readonly kernelHint: [number, number];

  constructor(inC: number, outC: number, kernel: number | [number, number], opts: MobileOneOptions = {}) {
    super();
    const k: [number, number] = typeof kernel === 'number' ? [kernel, kernel] : kernel;
    const groups = opts.groups ?? 1;
    if (groups !== 1 && groups !== inC) throw new Error(`MobileOneBlock: groups must be 1 or in_channels (got groups=${groups}, in=${inC})`);
    this.kernelHint = k;
    this.depthwiseHint = groups !== 1;
    this.stride = opts.stride ?? 1;
    this.padding = opts.padding ?? [Math.floor(k[0] / 2), Math.floor(k[1] / 2)];
    this.useAct = opts.useAct ?? true;
    const init = opts.init ?? new Initializer(0);
    if (opts.useSe) this.addModule('se', new SEBlock(outC, 0.0625, init, opts.seWidth));
    const convOpts = { stride: this.stride, padding: this.padding, groups, init };
    if (opts.inferenceMode) {
      this.addModule('reparam_conv', new Conv2d(inC, outC, k, { ...convOpts, bias: true }));
      return;
    }
    if (inC === outC && this.stride === 1) this.addModule('rbr_skip', new BatchNorm2d(inC));
    const nBranches = opts.numConvBranches ?? 1;
    if (nBranches > 0) {
      const list = new Sequential();
      for (let i = 0; i < nBranches; i++) list.push(new ConvBn(inC, outC, k, convOpts));
      this.addModule('rbr_conv', list);
    }
    if ((opts.useScaleBranch ?? true) && k[0] > 1) {
      this.addModule('rbr_scale', new ConvBn(inC, outC, 1, { ...convOpts, padding: [0, 0] }));
    }
  }

  get se(): SEBlock | null {
    return this.optionalChildAs('se', SEBlock);
  }

  get rbrSkip(): BatchNorm2d | null {
    return this.optionalChildAs('rbr_skip', BatchNorm2d);
  }

  /** The k×k conv branches (`rbr_conv.0`, …); empty when there are none or the block is fused. */
  get rbrConv(): ConvBn[] {
    const list = this.optionalChildAs('rbr_conv', Sequential);
    if (!list) return [];
    return list.modules().map((m, i) => {
      if (!(m instanceof ConvBn)) throw new Error(`MobileOneBlock.rbr_conv.${i} is a ${m.constructor.name}, expected a ConvBn`);
      return m;
    });
  }

  get rbrScale(): ConvBn | null {
    return this.optionalChildAs('rbr_scale', ConvBn);
  }

  get reparamConv(): Conv2d | null {
    return this.optionalChildAs('reparam_conv', Conv2d);
  }

  /** The k×k conv that fixes the block's geometry: `reparam_conv` or the first `rbr_conv` branch. */
  private kernelConv(): Conv2d | null {
    return this.reparamConv ?? this.rbrConv[0]?.conv ?? null;
  }

  /** Any conv of the block (a 1×1 scale branch fixes the channels, not the kernel). */
  private anyConv(): Conv2d | null {
    return this.kernelConv() ?? this.rbrScale?.conv ?? null;
  }

  get inChannels(): number {
    const c = this.anyConv();
    if (c) return c.inChannels;
    const skip = this.rbrSkip;
    if (skip) return skip.numFeatures;
    throw new Error('MobileOneBlock has no branch');
  }

  get outChannels(): number {
    const c = this.anyConv();
    if (c) return c.outChannels;
    const skip = this.rbrSkip;
    if (skip) return skip.numFeatures;
    throw new Error('MobileOneBlock has no branch');
  }

  get kernel(): [number, number] {
    return this.kernelConv()?.kernel ?? [this.kernelHint[0], this.kernelHint[1]];
  }

  /** Depthwise (groups = C_in) or dense (groups = 1); from a conv's layout where there is one. */
  get depthwise(): boolean {
    return this.anyConv()?.depthwise ?? this.depthwiseHint;
  }

  get groups(): number {
    return this.depthwise ? this.inChannels : 1;
  }

  /** Branch sum before SE and activation. */
  preActivation(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const reparam = this.reparamConv;
      if (reparam) return reparam.call(x);
      let out: tf.Tensor | null = null;
      const add = (t: tf.Tensor) => {
        out = out ? out.add(t) : t;
      };
      const skip = this.rbrSkip;
      if (skip) add(skip.call(x));
      const scale = this.rbrScale;
      if (scale) add(scale.call(x));
      for (const b of this.rbrConv) add(b.call(x));
      if (!out) throw new Error('MobileOneBlock has no branch');
      return out;
    });
  }

  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      let y = this.preActivation(x);
      const se = this.se;
      if (se) y = se.call(y);
      return this.useAct ? gelu(y) : y;
    });
  }

  /** The fused kernel and bias (methods.md §1.7 (a)–(d)); works on either form. */
  fusedKernelBias(): KernelBias {
    const reparam = this.reparamConv;
    if (reparam) {
      return { w: reparam.weight.clone() as tf.Tensor4D, b: (reparam.bias ?? tf.zeros([reparam.outChannels])).clone() as tf.Tensor1D };
    }
    const [kh, kw] = this.kernel;
    const depthwise = this.depthwise;
    const parts: KernelBias[] = [];
    for (const b of this.rbrConv) parts.push(b.fused());
    const scale = this.rbrScale;
    if (scale) {
      const s = scale.fused();
      parts.push({ w: padKernel(s.w, kh, kw), b: s.b });
      s.w.dispose();
    }
    const skip = this.rbrSkip;
    if (skip) parts.push(foldBnIdentity(skip, kh, kw, depthwise));
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
    // Keep the official key order: se first, then reparam_conv.
    this.addModule('reparam_conv', conv);
  }
}
