import * as tf from '../tf.js';
import { Module } from '../nn/module.js';
import { Conv2d, type Conv2dOptions } from './conv2d.js';
import { BatchNorm2d } from './batch-norm.js';
import { foldConvBn, type KernelBias } from './fuse.js';

/** nn.Sequential(conv=Conv2d(bias=False), bn=BatchNorm2d): the branch unit of MobileOne blocks. */
export class ConvBn extends Module {
  readonly conv: Conv2d;
  readonly bn: BatchNorm2d;

  constructor(inC: number, outC: number, kernel: number | [number, number], opts: Omit<Conv2dOptions, 'bias'> = {}) {
    super();
    this.conv = this.addModule('conv', new Conv2d(inC, outC, kernel, { ...opts, bias: false }));
    this.bn = this.addModule('bn', new BatchNorm2d(outC));
  }

  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.bn.call(this.conv.call(x)));
  }

  /** Eval-mode BN folded into the conv. */
  fused(): KernelBias {
    return foldConvBn(this.conv, this.bn);
  }
}
