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
  readonly stride: number;

  constructor(
    inC: number,
    outC: number,
    opts: { kernelSize: number; stride: number; groups: number; smallKernel: number; useSe?: boolean; seWidth?: number; inferenceMode?: boolean; init?: Initializer },
  ) {
    super();
    this.stride = opts.stride;
    const init = opts.init ?? new Initializer(0);
    if (opts.useSe) this.addModule('se', new SqueezeExcite(outC, 0.25, init, opts.seWidth));
    const k = opts.kernelSize;
    const p = Math.floor(k / 2);
    if (opts.inferenceMode) {
      this.addModule('lkb_reparam', new Conv2d(inC, outC, k, { stride: this.stride, padding: [p, p], groups: opts.groups, bias: true, init }));
      return;
    }
    this.addModule('lkb_origin', new ConvBn(inC, outC, k, { stride: this.stride, padding: [p, p], groups: opts.groups, init }));
    const s = opts.smallKernel;
    const sp = Math.floor(s / 2);
    this.addModule('small_conv', new ConvBn(inC, outC, s, { stride: this.stride, padding: [sp, sp], groups: opts.groups, init }));
  }

  get se(): SqueezeExcite | null {
    return this.optionalChildAs('se', SqueezeExcite);
  }

  get lkbOrigin(): ConvBn | null {
    return this.optionalChildAs('lkb_origin', ConvBn);
  }

  get smallConv(): ConvBn | null {
    return this.optionalChildAs('small_conv', ConvBn);
  }

  get lkbReparam(): Conv2d | null {
    return this.optionalChildAs('lkb_reparam', Conv2d);
  }

  /** The large-kernel conv: `lkb_reparam` (fused) or `lkb_origin.conv`. */
  private largeConv(): Conv2d {
    const c = this.lkbReparam ?? this.lkbOrigin?.conv;
    if (!c) throw new Error('ReparamLargeKernelConv has neither lkb_reparam nor lkb_origin');
    return c;
  }

  get inChannels(): number {
    return this.largeConv().inChannels;
  }

  get outChannels(): number {
    return this.largeConv().outChannels;
  }

  /** Square large kernel size, from the large conv's weight. */
  get kernelSize(): number {
    return this.largeConv().kernel[0];
  }

  /** Small kernel size from `small_conv`; null once fused (the fused conv does not record it). */
  get smallKernel(): number | null {
    return this.smallConv?.conv.kernel[0] ?? null;
  }

  /** 1 or C_in, from the large conv's layout. */
  get groups(): number {
    return this.largeConv().groups;
  }

  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const fused = this.child('lkb_reparam');
      let out = fused ? fused.call(x) : this.sub('lkb_origin').call(x).add(this.sub('small_conv').call(x));
      const se = this.child('se');
      if (se) out = se.call(out);
      return gelu(out);
    });
  }

  override reparameterize(): void {
    if (this.lkbReparam) return;
    const origin = this.lkbOrigin;
    const smallConv = this.smallConv;
    if (!origin || !smallConv) throw new Error('ReparamLargeKernelConv: lkb_origin and small_conv are needed to fuse');
    const k = this.kernelSize;
    const big = origin.fused();
    const small = smallConv.fused();
    const padded = { w: padKernel(small.w, k, k), b: small.b };
    const { w, b } = sumKernels([big, padded]);
    disposeKB(big);
    disposeKB(small);
    padded.w.dispose();
    const p = Math.floor(k / 2);
    const conv = new Conv2d(this.inChannels, this.outChannels, k, { stride: this.stride, padding: [p, p], groups: this.groups, bias: true });
    conv.setWeights(w, b);
    this.removeModule('lkb_origin');
    this.removeModule('small_conv');
    this.addModule('lkb_reparam', conv);
  }
}
