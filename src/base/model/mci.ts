import * as tf from '../tf.js';
import { Module, Sequential } from '../nn/module.js';
import { Initializer } from '../nn/init.js';
import { MobileOneBlock } from '../layers/mobileone-block.js';
import { RepMixerBlock } from '../layers/repmixer-block.js';
import { AttentionBlock } from '../layers/attention-block.js';
import { PatchEmbed } from '../layers/patch-embed.js';
import { RepCPE } from '../layers/rep-cpe.js';
import type { MciConfig } from './configs.js';

/** GlobalPool2D head: spatial mean, then `x @ proj` (proj [in, out], no bias). */
export class GlobalPool2D extends Module {
  constructor(inDim: number, outDim: number, init: Initializer) {
    super();
    this.addParam('proj', init.normal([inDim, outDim], inDim ** -0.5), { noDecay: false });
  }

  /** The pooled features [B, C] (hooked as `head.pool` in the fixtures). */
  pool(x: tf.Tensor): tf.Tensor {
    return x.mean([1, 2]);
  }

  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => tf.matMul(this.pool(x) as tf.Tensor2D, this.ownParams.get('proj')!.variable as tf.Tensor2D));
  }
}

/**
 * MCi image encoder (FastViT): MobileOne stem → RepMixer stages with PatchEmbed downsamplers →
 * RepCPE + attention stage → conv_exp (MobileOne + SE) → GlobalPool2D projection. NHWC input.
 */
export class FastViT extends Module {
  readonly cfg: MciConfig;
  readonly patchEmbed: Sequential;
  readonly network: Sequential;
  readonly convExp: MobileOneBlock;
  readonly head: GlobalPool2D;

  constructor(cfg: MciConfig, projectionDim: number, opts: { inferenceMode?: boolean; init?: Initializer } = {}) {
    super();
    this.cfg = cfg;
    const init = opts.init ?? new Initializer(0);
    const inf = opts.inferenceMode ?? false;
    const d = cfg.embedDims;
    this.patchEmbed = this.addModule(
      'patch_embed',
      new Sequential([
        new MobileOneBlock(3, d[0], 3, { stride: 2, padding: [1, 1], inferenceMode: inf, init }),
        new MobileOneBlock(d[0], d[0], 3, { stride: 2, padding: [1, 1], groups: d[0], inferenceMode: inf, init }),
        new MobileOneBlock(d[0], d[0], 1, { stride: 1, padding: [0, 0], inferenceMode: inf, init }),
      ]),
    );
    const network = new Sequential();
    const k = cfg.repmixerKernel;
    for (let i = 0; i < cfg.layers.length; i++) {
      if (cfg.posEmbs[i]) network.push(new RepCPE(d[i], { kernel: [7, 7], inferenceMode: inf, init }));
      const stage = new Sequential();
      for (let j = 0; j < cfg.layers[i]; j++) {
        if (i === cfg.layers.length - 1) {
          stage.push(new AttentionBlock(d[i], { mlpRatio: cfg.mlpRatio, headDim: cfg.headDim, layerScaleInit: cfg.layerScaleInit, init }));
        } else {
          stage.push(
            new RepMixerBlock(d[i], { kernel: [k, k], ffnKernel: [7, 7], mlpRatio: cfg.mlpRatio, inferenceMode: inf, layerScaleInit: cfg.layerScaleInit, init }),
          );
        }
      }
      network.push(stage);
      if (i + 1 < cfg.layers.length) {
        network.push(new PatchEmbed(d[i], d[i + 1], { patchSize: cfg.downPatchSize, stride: cfg.downStride, useSe: cfg.seDownsamples[i + 1], inferenceMode: inf, init }));
      }
    }
    this.network = this.addModule('network', network);
    const last = d[d.length - 1];
    const exp = Math.floor(last * cfg.clsRatio);
    this.convExp = this.addModule('conv_exp', new MobileOneBlock(last, exp, 3, { stride: 1, padding: [1, 1], groups: last, useSe: true, inferenceMode: inf, init }));
    this.head = this.addModule('head', new GlobalPool2D(exp, projectionDim, init));
  }

  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      let y = this.patchEmbed.call(x);
      y = this.network.call(y);
      y = this.convExp.call(y);
      return this.head.call(y);
    });
  }
}
