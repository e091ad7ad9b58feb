import * as tf from '../tf.js';
import { Module } from '../nn/module.js';
import { gelu } from '../nn/functional.js';
import { Initializer } from '../nn/init.js';
import { Conv2d } from './conv2d.js';
import { ConvBn } from './conv-bn.js';

/**
 * ConvFFN: fc2(GELU(fc1(BN(depthwise_conv(x))))) with a 7×7 (image) or 1×11 (text) depthwise
 * conv without bias and biased 1×1 convs in → hidden → out. No residual inside.
 */
export class ConvFFN extends Module {
  readonly conv: ConvBn;
  readonly fc1: Conv2d;
  readonly fc2: Conv2d;

  constructor(inC: number, hidden: number, outC: number, kernel: [number, number], init: Initializer = new Initializer(0)) {
    super();
    this.conv = this.addModule('conv', new ConvBn(inC, inC, kernel, { groups: inC, init }));
    this.fc1 = this.addModule('fc1', new Conv2d(inC, hidden, 1, { bias: true, init }));
    this.fc2 = this.addModule('fc2', new Conv2d(hidden, outC, 1, { bias: true, init }));
  }

  get hidden(): number {
    return this.fc1.outChannels;
  }

  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.fc2.call(gelu(this.fc1.call(this.conv.call(x)))));
  }
}
