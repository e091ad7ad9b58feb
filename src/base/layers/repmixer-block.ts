import * as tf from '../tf.js';
import { Module } from '../nn/module.js';
import type { ForwardContext } from '../nn/context.js';
import { gelu } from '../nn/functional.js';
import { Initializer, full } from '../nn/init.js';
import { RepMixer } from './repmixer.js';
import { ConvFFN } from './conv-ffn.js';

export interface RepMixerBlockOptions {
  /** RepMixer kernel: [3, 3] (image) or [1, 11] (text). */
  kernel: [number, number];
  /** ConvFFN depthwise kernel: [7, 7] (image) or [1, 11] (text). */
  ffnKernel: [number, number];
  mlpRatio: number;
  /** ConvFFN hidden width (default ⌊dim·mlpRatio⌋). */
  hidden?: number;
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
  constructor(dim: number, opts: RepMixerBlockOptions) {
    super();
    const init = opts.init ?? new Initializer(0);
    this.addParam('layer_scale', full([dim], opts.layerScaleInit ?? 1e-5), { torchShape: [dim, 1, 1], noDecay: false });
    this.addModule('token_mixer', new RepMixer(dim, opts.kernel, { inferenceMode: opts.inferenceMode, layerScaleInit: opts.layerScaleInit, init }));
    this.addModule('convffn', new ConvFFN(dim, opts.hidden ?? Math.floor(dim * opts.mlpRatio), dim, opts.ffnKernel, init));
  }

  get tokenMixer(): RepMixer {
    return this.childAs('token_mixer', RepMixer);
  }

  get convffn(): ConvFFN {
    return this.childAs('convffn', ConvFFN);
  }

  get layerScale(): tf.Variable {
    return this.param('layer_scale');
  }

  /**
   * The block's output at one row per sequence only (text [B, S, C] input; `flatRows` = b·S + row):
   * the token mixer and the ConvFFN's depthwise conv + BN run on every position (their receptive
   * field spans neighbours), the pointwise fc1/GELU/fc2 — most of the cost — only on the kept rows.
   * Exact; used by the text tower, which pools a single (EOT) row after its last block.
   */
  forwardRows(x: tf.Tensor, flatRows: tf.Tensor1D): tf.Tensor2D {
    return tf.tidy(() => {
      const [b, s, c] = x.shape as [number, number, number];
      const y = this.tokenMixer.call(x.expandDims(1));
      const h = this.convffn.conv.call(y);
      const yr = tf.gather(y.reshape([b * s, c]), flatRows);
      const hr = tf.gather(h.reshape([b * s, c]), flatRows).reshape([-1, 1, 1, c]);
      const f = this.convffn.fc2.call(gelu(this.convffn.fc1.call(hr))).reshape([-1, c]);
      return yr.add(f.mul(this.layerScale)) as tf.Tensor2D;
    });
  }

  forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    return tf.tidy(() => {
      const seq = x.rank === 3;
      const x4 = seq ? x.expandDims(1) : x;
      const y = this.sub('token_mixer').call(x4, ctx);
      const out = y.add(this.convffn.scaledForward(y, this.layerScale as tf.Tensor1D, ctx));
      return seq ? out.squeeze([1]) : out;
    });
  }
}
