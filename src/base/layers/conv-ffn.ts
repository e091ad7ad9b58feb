import * as tf from '../tf.js';
import { Module } from '../nn/module.js';
import type { ForwardContext } from '../nn/context.js';
import { gelu } from '../nn/functional.js';
import { Initializer } from '../nn/init.js';
import { foldsApply } from '../nn/fold-cache.js';
import { fastDepthwiseConv2d } from '../nn/fast-ops.js';
import { torchPadding } from '../nn/functional.js';
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

  /**
   * γ ⊙ ConvFFN(x), the branch of the blocks that hold a ConvFFN. In inference (see `foldsApply`) it
   * runs with two exact folds (methods.md §1.7 (h)): the depthwise conv's eval-mode BN into the conv
   * (W·t, β − μ·t), and the layer scale into fc2 (diag(γ)·W₂, γ ⊙ b₂) — two elementwise passes
   * over the activations fewer, and the depthwise conv with its bias in one kernel. Otherwise the
   * plain graph.
   */
  scaledForward(x: tf.Tensor, gamma: tf.Tensor1D, ctx?: ForwardContext): tf.Tensor {
    if (!foldsApply(this)) return tf.tidy(() => this.call(x, ctx).mul(gamma));
    const dw = this.conv.conv;
    const bn = this.conv.bn;
    const fc2 = this.fc2;
    const [dwW, dwB, w2, b2] = this.foldCache('scaled').get([dw.weight, bn.weight, bn.bias, bn.runningMean, bn.runningVar, fc2.weight, ...(fc2.bias ? [fc2.bias] : []), gamma], () => {
      const { w, b } = this.conv.fused();
      const g = gamma.reshape([1, 1, 1, -1]);
      return [w, b, fc2.weight.mul(g), (fc2.bias ?? tf.zeros([fc2.outChannels])).mul(gamma)];
    });
    return tf.tidy(() => {
      const pad = torchPadding(dw.padding[0], dw.padding[1]);
      const h =
        fastDepthwiseConv2d(x as tf.Tensor4D, dwW as tf.Tensor4D, dwB, dw.stride, pad) ??
        tf.depthwiseConv2d(x as tf.Tensor4D, dwW as tf.Tensor4D, [dw.stride, dw.stride], pad).add(dwB);
      const a = gelu(this.fc1.call(h));
      const [n, hh, ww, c] = a.shape;
      const y = tf.matMul(a.reshape([n * hh * ww, c]) as tf.Tensor2D, w2.reshape([c, -1]) as tf.Tensor2D).add(b2);
      return y.reshape([n, hh, ww, -1]);
    });
  }
}
