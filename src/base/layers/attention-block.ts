import * as tf from '../tf.js';
import { Module } from '../nn/module.js';
import { Initializer, full } from '../nn/init.js';
import { BatchNorm2d } from './batch-norm.js';
import { MHSA } from './mhsa.js';
import { ConvFFN } from './conv-ffn.js';

/** MCi AttentionBlock: x += γ₁ ⊙ MHSA(BN(x)); x += γ₂ ⊙ ConvFFN(x) (the pre-norm is BatchNorm). */
export class AttentionBlock extends Module {
  readonly norm: BatchNorm2d;
  readonly tokenMixer: MHSA;
  readonly convffn: ConvFFN;

  constructor(dim: number, opts: { mlpRatio: number; headDim?: number; layerScaleInit?: number; init?: Initializer }) {
    super();
    const init = opts.init ?? new Initializer(0);
    const ls = opts.layerScaleInit ?? 1e-5;
    this.addParam('layer_scale_1', full([dim], ls), { torchShape: [dim, 1, 1], noDecay: false });
    this.addParam('layer_scale_2', full([dim], ls), { torchShape: [dim, 1, 1], noDecay: false });
    this.norm = this.addModule('norm', new BatchNorm2d(dim));
    this.tokenMixer = this.addModule('token_mixer', new MHSA(dim, opts.headDim ?? 32, init));
    this.convffn = this.addModule('convffn', new ConvFFN(dim, Math.floor(dim * opts.mlpRatio), dim, [7, 7], init));
  }

  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const g1 = this.ownParams.get('layer_scale_1')!.variable;
      const g2 = this.ownParams.get('layer_scale_2')!.variable;
      const y = x.add(this.tokenMixer.call(this.norm.call(x)).mul(g1));
      return y.add(this.convffn.call(y).mul(g2));
    });
  }
}
