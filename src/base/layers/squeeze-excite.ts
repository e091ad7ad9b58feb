import * as tf from '../tf.js';
import { Module } from '../nn/module.js';
import { Conv2d } from './conv2d.js';
import type { Initializer } from '../nn/init.js';

/** timm's make_divisible (round_limit configurable; SqueezeExcite passes 0). */
export function makeDivisible(v: number, divisor = 8, minValue?: number, roundLimit = 0.9): number {
  const min = minValue ?? divisor;
  let n = Math.max(min, Math.floor((v + divisor / 2) / divisor) * divisor);
  if (n < roundLimit * v) n += divisor;
  return n;
}

function squeeze(x: tf.Tensor, reduce: Conv2d, expand: Conv2d): tf.Tensor {
  return tf.tidy(() => {
    const s = x.mean([1, 2], true);
    const g = tf.sigmoid(expand.call(tf.relu(reduce.call(s))));
    return x.mul(g);
  });
}

/** MobileOne `SEBlock` (used by `conv_exp`): reduce/expand 1×1 convs, ratio 1/16, ReLU, sigmoid. */
export class SEBlock extends Module {
  readonly reduce: Conv2d;
  readonly expand: Conv2d;

  constructor(channels: number, rdRatio = 0.0625, init?: Initializer) {
    super();
    const rd = Math.floor(channels * rdRatio);
    this.reduce = this.addModule('reduce', new Conv2d(channels, rd, 1, { bias: true, init }));
    this.expand = this.addModule('expand', new Conv2d(rd, channels, 1, { bias: true, init }));
  }

  forward(x: tf.Tensor): tf.Tensor {
    return squeeze(x, this.reduce, this.expand);
  }
}

/** timm `SqueezeExcite` (PatchEmbed downsamplers): fc1/fc2 1×1 convs, rd = make_divisible(C/4, 8). */
export class SqueezeExcite extends Module {
  readonly fc1: Conv2d;
  readonly fc2: Conv2d;

  constructor(channels: number, rdRatio = 0.25, init?: Initializer) {
    super();
    const rd = makeDivisible(channels * rdRatio, 8, undefined, 0);
    this.fc1 = this.addModule('fc1', new Conv2d(channels, rd, 1, { bias: true, init }));
    this.fc2 = this.addModule('fc2', new Conv2d(rd, channels, 1, { bias: true, init }));
  }

  forward(x: tf.Tensor): tf.Tensor {
    return squeeze(x, this.fc1, this.fc2);
  }
}
