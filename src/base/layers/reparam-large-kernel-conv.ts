import * as tf from '../tf.js';
import { Module } from '../nn/module.js';
import { gelu } from '../nn/functional.js';
import { Initializer } from '../nn/init.js';
import { Conv2d } from './conv2d.js';
import { ConvBn } from './conv-bn.js';
import { SqueezeExcite } from './squeeze-excite.js';
import { disposeKB, padKernel, sumKernels } from './fuse.js';

/**
 * ReparamLargeKernelConv (PatchEmbed's first layer): GELU(SE(BN(conv7×7(x)) + BN(conv3×3(x))))
 * with stride 2 and groups = C_in; fused into `lkb_reparam` (methods.md §1.7 (g)).
 */
export class ReparamLargeKernelConv extends Module {
  readonly inChannels: number;
  readonly outChannels: number;
  readonly kernelSize: number;
  readonly smallKernel: number;
  readonly stride: number;
  readonly groups: number;
  se: SqueezeExcite | null = null;
  lkbOrigin: ConvBn | null = null;
  smallConv: ConvBn | null = null;
  lkbReparam: Conv2d | null = null;

  constructor(
    inC: number,
    outC: number,
    opts: { kernelSize: number; stride: number; groups: number; smallKernel: number; useSe?: boolean; inferenceMode?: boolean; init?: Initializer },
  ) {
    super();
    this.inChannels = inC;
    this.outChannels = outC;
    this.kernelSize = opts.kernelSize;
    this.smallKernel = opts.smallKernel;
    this.stride = opts.stride;
    this.groups = opts.groups;
    const init = opts.init ?? new Initializer(0);
    if (opts.useSe) this.se = this.addModule('se', new SqueezeExcite(outC, 0.25, init));
    const k = opts.kernelSize;
    const p = Math.floor(k / 2);
    if (opts.inferenceMode) {
      this.lkbReparam = this.addModule('lkb_reparam', new Conv2d(inC, outC, k, { stride: this.stride, padding: [p, p], groups: this.groups, bias: true, init }));
      return;
    }
    this.lkbOrigin = this.addModule('lkb_origin', new ConvBn(inC, outC, k, { stride: this.stride, padding: [p, p], groups: this.groups, init }));
    const s = opts.smallKernel;
    const sp = Math.floor(s / 2);
    this.smallConv = this.addModule('small_conv', new ConvBn(inC, outC, s, { stride: this.stride, padding: [sp, sp], groups: this.groups, init }));
  }

  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      let out = this.lkbReparam ? this.lkbReparam.call(x) : this.lkbOrigin!.call(x).add(this.smallConv!.call(x));
      if (this.se) out = this.se.call(out);
      return gelu(out);
    });
  }

  override reparameterize(): void {
    if (this.lkbReparam) return;
    const big = this.lkbOrigin!.fused();
    const small = this.smallConv!.fused();
    const padded = { w: padKernel(small.w, this.kernelSize, this.kernelSize), b: small.b };
    const { w, b } = sumKernels([big, padded]);
    disposeKB(big);
    disposeKB(small);
    padded.w.dispose();
    const p = Math.floor(this.kernelSize / 2);
    const conv = new Conv2d(this.inChannels, this.outChannels, this.kernelSize, { stride: this.stride, padding: [p, p], groups: this.groups, bias: true });
    conv.setWeights(w, b);
    this.removeModule('lkb_origin');
    this.removeModule('small_conv');
    this.lkbOrigin = null;
    this.smallConv = null;
    this.lkbReparam = this.addModule('lkb_reparam', conv);
  }
}
