import * as tf from '../tf.js';
import { Module } from '../nn/module.js';
import { Initializer } from '../nn/init.js';
import { linear } from '../nn/functional.js';

/** torch.nn.Linear; the weight is stored [in, out] (PyTorch [out, in]). */
export class Linear extends Module {
  readonly inFeatures: number;
  readonly outFeatures: number;

  constructor(inFeatures: number, outFeatures: number, opts: { bias?: boolean; init?: Initializer } = {}) {
    super();
    this.inFeatures = inFeatures;
    this.outFeatures = outFeatures;
    const init = opts.init ?? new Initializer(0);
    this.addParam('weight', init.uniformFanIn([inFeatures, outFeatures], inFeatures), {
      layout: 'linear',
      torchShape: [outFeatures, inFeatures],
    });
    if (opts.bias ?? true) this.addParam('bias', init.uniformFanIn([outFeatures], inFeatures));
  }

  get weight(): tf.Variable {
    return this.ownParams.get('weight')!.variable;
  }

  get bias(): tf.Variable | undefined {
    return this.ownParams.get('bias')?.variable;
  }

  forward(x: tf.Tensor): tf.Tensor {
    return linear(x, this.weight, this.bias);
  }
}
