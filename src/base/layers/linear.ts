import * as tf from '../tf.js';
import { Module } from '../nn/module.js';
import { Initializer } from '../nn/init.js';
import { linear } from '../nn/functional.js';

/** torch.nn.Linear; the weight is stored [in, out] (PyTorch [out, in]). */
export class Linear extends Module {
  constructor(inFeatures: number, outFeatures: number, opts: { bias?: boolean; init?: Initializer } = {}) {
    super();
    const init = opts.init ?? new Initializer(0);
    this.addParam('weight', init.uniformFanIn([inFeatures, outFeatures], inFeatures), {
      layout: 'linear',
      torchShape: [outFeatures, inFeatures],
    });
    if (opts.bias ?? true) this.addParam('bias', init.uniformFanIn([outFeatures], inFeatures));
  }

  /** From the weight [in, out]. */
  get inFeatures(): number {
    return (this.weight as tf.Tensor2D).shape[0];
  }

  /** From the weight [in, out]. */
  get outFeatures(): number {
    return (this.weight as tf.Tensor2D).shape[1];
  }

  get weight(): tf.Variable {
    return this.param('weight');
  }

  get bias(): tf.Variable | undefined {
    return this.ownParams.get('bias')?.variable;
  }

  forward(x: tf.Tensor): tf.Tensor {
    return linear(x, this.weight, this.bias);
  }
}
