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

function squeeze(x: tf.Tensor, reduce: Module, expand: Module): tf.Tensor {
  return tf.tidy(() => {
    const s = x.mean([1, 2], true);
    const g = tf.sigmoid(expand.call(tf.relu(reduce.call(s))));
    return x.mul(g);
  });
}

/** MobileOne `SEBlock` (used by `conv_exp`): reduce/expand 1×1 convs, ratio 1/16, ReLU, sigmoid. `width`: the hidden width, when not ⌊C·ratio⌋ (a pruned model). */
/** The hidden width `SEBlock` gives `channels` by default. */
export function seBlockWidth(channels: number, rdRatio = 0.0625): number {
  return Math.floor(channels * rdRatio);
}

export class SEBlock extends Module {
  constructor(channels: number, rdRatio = 0.0625, init?: Initializer, width?: number) {
    super();
    const rd = width ?? seBlockWidth(channels, rdRatio);
    this.addModule('reduce', new Conv2d(channels, rd, 1, { bias: true, init }));
    this.addModule('expand', new Conv2d(rd, channels, 1, { bias: true, init }));
  }

  get reduce(): Conv2d {
    return this.childAs('reduce', Conv2d);
  }

  get expand(): Conv2d {
    return this.childAs('expand', Conv2d);
  }

  forward(x: tf.Tensor): tf.Tensor {
    return squeeze(x, this.sub('reduce'), this.sub('expand'));
  }
}

/** The hidden width `SqueezeExcite` gives `channels` by default. */
export function squeezeExciteWidth(channels: number, rdRatio = 0.25): number {
  return makeDivisible(channels * rdRatio, 8, undefined, 0);
}

/** timm `SqueezeExcite` (PatchEmbed downsamplers): fc1/fc2 1×1 convs, rd = make_divisible(C/4, 8). `width`: the hidden width, when not that (a pruned model). */
export class SqueezeExcite extends Module {
  constructor(channels: number, rdRatio = 0.25, init?: Initializer, width?: number) {
    super();
    const rd = width ?? squeezeExciteWidth(channels, rdRatio);
    this.addModule('fc1', new Conv2d(channels, rd, 1, { bias: true, init }));
    this.addModule('fc2', new Conv2d(rd, channels, 1, { bias: true, init }));
  }

  get fc1(): Conv2d {
    return this.childAs('fc1', Conv2d);
  }

  get fc2(): Conv2d {
    return this.childAs('fc2', Conv2d);
  }

  forward(x: tf.Tensor): tf.Tensor {
    return squeeze(x, this.sub('fc1'), this.sub('fc2'));
  }
}
