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
  constructor(inC: number, hidden: number, outC: number, kernel: [number, number], init: Initializer = new Initializer(0)) {
    super();
    this.addModule('conv', new ConvBn(inC, inC, kernel, { groups: inC, init }));
    this.addModule('fc1', new Conv2d(inC, hidden, 1, { bias: true, init }));
    this.addModule('fc2', new Conv2d(hidden, outC, 1, { bias: true, init }));
  }

  get conv(): ConvBn {
    return this.childAs('conv', ConvBn);
  }

  get fc1(): Conv2d {
    return this.childAs('fc1', Conv2d);
  }

  get fc2(): Conv2d {
    return this.childAs('fc2', Conv2d);
  }

  /** Hidden width, from fc1's weight. */
  get hidden(): number {
    return this.fc1.outChannels;
  }

  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.sub('fc2').call(gelu(this.sub('fc1').call(this.sub('conv').call(x)))));
  }
}
