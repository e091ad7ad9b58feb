import * as tf from '../tf.js';
import { Module } from '../nn/module.js';
import { Conv2d, type Conv2dOptions } from './conv2d.js';
import { BatchNorm2d } from './batch-norm.js';
import { foldConvBn, type KernelBias } from './fuse.js';

/** nn.Sequential(conv=Conv2d(bias=False), bn=BatchNorm2d): the branch unit of MobileOne blocks. */
export class ConvBn extends Module {
  constructor(inC: number, outC: number, kernel: number | [number, number], opts: Omit<Conv2dOptions, 'bias'> = {}) {
    super();
    this.addModule('conv', new Conv2d(inC, outC, kernel, { ...opts, bias: false }));
    this.addModule('bn', new BatchNorm2d(outC));
  }

  get conv(): Conv2d {
    return this.childAs('conv', Conv2d);
  }

  get bn(): BatchNorm2d {
    return this.childAs('bn', BatchNorm2d);
  }

  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.sub('bn').call(this.sub('conv').call(x)));
  }

  /** Eval-mode BN folded into the conv. */
  fused(): KernelBias {
    return foldConvBn(this.conv, this.bn);
  }
}
