import * as tf from '../tf.js';
import { Module } from '../nn/module.js';
import { ones, zeros } from '../nn/init.js';

/**
 * torch.nn.BatchNorm2d over the last (channel) axis. In eval mode it uses the running
 * statistics; in train mode it normalises with the batch statistics and updates the running
 * ones (momentum 0.1, unbiased variance), like PyTorch.
 */
export class BatchNorm2d extends Module {
  readonly eps: number;
  readonly momentum: number;

  constructor(numFeatures: number, eps = 1e-5, momentum = 0.1) {
    super();
    this.eps = eps;
    this.momentum = momentum;
    this.addParam('weight', ones([numFeatures]), { noDecay: true });
    this.addParam('bias', zeros([numFeatures]), { noDecay: true });
    this.addParam('running_mean', zeros([numFeatures]), { trainable: false });
    this.addParam('running_var', ones([numFeatures]), { trainable: false });
    this.addParam('num_batches_tracked', tf.scalar(0, 'int32'), { trainable: false, torchDtype: 'int64' });
  }

  private p(name: string): tf.Variable {
    return this.param(name);
  }

  /** C, from the weight [C]. */
  get numFeatures(): number {
    return this.weight.shape[0];
  }

  get weight(): tf.Variable {
    return this.p('weight');
  }
  get bias(): tf.Variable {
    return this.p('bias');
  }
  get runningMean(): tf.Variable {
    return this.p('running_mean');
  }
  get runningVar(): tf.Variable {
    return this.p('running_var');
  }

  /** Per-channel (scale, shift) of the eval-mode affine map y = x·scale + shift. */
  affine(): { scale: tf.Tensor1D; shift: tf.Tensor1D } {
    return tf.tidy(() => {
      const scale = this.weight.mul(tf.rsqrt(this.runningVar.add(this.eps))) as tf.Tensor1D;
      const shift = this.bias.sub(this.runningMean.mul(scale)) as tf.Tensor1D;
      return { scale, shift };
    });
  }

  forward(x: tf.Tensor): tf.Tensor {
    if (!this.training) {
      return tf.tidy(() => {
        const { scale, shift } = this.affine();
        return x.mul(scale).add(shift);
      });
    }
    return tf.tidy(() => {
      const axes = x.shape.map((_, i) => i).slice(0, -1);
      const { mean, variance } = tf.moments(x, axes);
      const n = x.size / this.numFeatures;
      const y = x.sub(mean).mul(tf.rsqrt(variance.add(this.eps))).mul(this.weight).add(this.bias);
      tf.tidy(() => {
        const m = this.momentum;
        const unbiased = variance.mul(n / Math.max(1, n - 1));
        this.runningMean.assign(this.runningMean.mul(1 - m).add(mean.mul(m)));
        this.runningVar.assign(this.runningVar.mul(1 - m).add(unbiased.mul(m)));
        const c = this.p('num_batches_tracked');
        c.assign(c.add(tf.scalar(1, 'int32')));
      });
      return y;
    });
  }
}
