import * as tf from '../tf.js';
import { Module } from '../nn/module.js';
import { Initializer, full } from '../nn/init.js';
import { RepMixer } from './repmixer.js';
import { ConvFFN } from './conv-ffn.js';

export interface RepMixerBlockOptions {
  /** RepMixer kernel: [3, 3] (image) or [1, 11] (text). */
  kernel: [number, number];
  /** ConvFFN depthwise kernel: [7, 7] (image) or [1, 11] (text). */
  ffnKernel: [number, number];
  mlpRatio: number;
  inferenceMode?: boolean;
  layerScaleInit?: number;
  init?: Initializer;
}

/**
 * RepMixerBlock (image stages 1–3, and the first/last block of the `mct` text tower):
 * x = token_mixer(x); x = x + γ ⊙ convffn(x). NHWC in and out. A rank-3 text input [B, S, C]
 * runs as the official "BC1S" layout, i.e. NHWC [B, 1, S, C], and comes back as [B, S, C].
 */
export class RepMixerBlock extends Module {
  readonly tokenMixer: RepMixer;
  readonly convffn: ConvFFN;

  constructor(dim: number, opts: RepMixerBlockOptions) {
    super();
    const init = opts.init ?? new Initializer(0);
    this.addParam('layer_scale', full([dim], opts.layerScaleInit ?? 1e-5), { torchShape: [dim, 1, 1], noDecay: false });
    this.tokenMixer = this.addModule('token_mixer', new RepMixer(dim, opts.kernel, { inferenceMode: opts.inferenceMode, layerScaleInit: opts.layerScaleInit, init }));
    this.convffn = this.addModule('convffn', new ConvFFN(dim, Math.floor(dim * opts.mlpRatio), dim, opts.ffnKernel, init));
  }

  get layerScale(): tf.Variable {
    return this.ownParams.get('layer_scale')!.variable;
  }

  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const seq = x.rank === 3;
      const x4 = seq ? x.expandDims(1) : x;
      const y = this.tokenMixer.call(x4);
      const out = y.add(this.convffn.call(y).mul(this.layerScale));
      return seq ? out.squeeze([1]) : out;
    });
  }
}
