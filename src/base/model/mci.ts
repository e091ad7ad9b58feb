import * as tf from '../tf.js';
import { Module, Sequential } from '../nn/module.js';
import type { ForwardContext } from '../nn/context.js';
import { Initializer } from '../nn/init.js';
import { MobileOneBlock } from '../layers/mobileone-block.js';
import { RepMixerBlock } from '../layers/repmixer-block.js';
import { AttentionBlock } from '../layers/attention-block.js';
import { PatchEmbed } from '../layers/patch-embed.js';
import { RepCPE } from '../layers/rep-cpe.js';
import { mciStages, type MciConfig } from './configs.js';

/** GlobalPool2D head: spatial mean, then `x @ proj` (proj [in, out]; `+ bias` [out] when built with one, timm's head). */
export class GlobalPool2D extends Module {
  constructor(inDim: number, outDim: number, init: Initializer, opts: { bias?: boolean } = {}) {
    super();
    this.addParam('proj', init.normal([inDim, outDim], inDim ** -0.5), { noDecay: false });
    if (opts.bias) this.addParam('bias', tf.zeros([outDim]));
  }

  get proj(): tf.Variable {
    return this.param('proj');
  }

  /** The bias added after the projection, or null (ml-mobileclip's head has none). */
  get bias(): tf.Variable | null {
    return this.ownParams.get('bias')?.variable ?? null;
  }

  /** The pooled features [B, C] (hooked as `head.pool` in the fixtures). */
  pool(x: tf.Tensor): tf.Tensor {
    return x.mean([1, 2]);
  }

  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const y = tf.matMul(this.pool(x) as tf.Tensor2D, this.proj as tf.Tensor2D);
      const b = this.bias;
      return b ? y.add(b) : y;
    });
  }
}

/**
 * MCi image encoder (FastViT): MobileOne stem → RepMixer stages with PatchEmbed downsamplers →
 * RepCPE + attention stage → conv_exp (MobileOne + SE) → GlobalPool2D projection. NHWC input.
 * Built from the per-stage form (`mciStages`): each stage has its own depth, width, mixer, heads and
 * per-block ConvFFN widths.
 */
export class FastViT extends Module {
  readonly cfg: MciConfig;

  constructor(cfg: MciConfig, projectionDim: number, opts: { inferenceMode?: boolean; init?: Initializer } = {}) {
    super();
    this.cfg = cfg;
    const init = opts.init ?? new Initializer(0);
    const inf = opts.inferenceMode ?? false;
    const stages = mciStages(cfg);
    const d0 = stages[0].width;
    this.addModule(
      'patch_embed',
      new Sequential([
        new MobileOneBlock(3, d0, 3, { stride: 2, padding: [1, 1], inferenceMode: inf, useScaleBranch: cfg.stemScaleBranch, init }),
        new MobileOneBlock(d0, d0, 3, { stride: 2, padding: [1, 1], groups: d0, inferenceMode: inf, useScaleBranch: cfg.stemScaleBranch, init }),
        new MobileOneBlock(d0, d0, 1, { stride: 1, padding: [0, 0], inferenceMode: inf, init }),
      ]),
    );
    const network = new Sequential();
    const k = cfg.repmixerKernel;
    stages.forEach((s, i) => {
      if (s.posEmb) network.push(new RepCPE(s.width, { kernel: [7, 7], inferenceMode: inf, init }));
      if (s.ffnDims.length !== s.depth) throw new Error(`MCi stage ${i}: ${s.ffnDims.length} ConvFFN widths for depth ${s.depth}`);
      const stage = new Sequential();
      for (let j = 0; j < s.depth; j++) {
        if (s.mixer === 'attention') {
          stage.push(
            new AttentionBlock(s.width, { hidden: s.ffnDims[j], headDim: s.headDim ?? 32, heads: s.heads, kernel: s.attention, kernelParams: s.attentionParams, qkNorm: s.qkNorm, attnOutNorm: s.attnOutNorm, norm: s.norm, layerScaleInit: cfg.layerScaleInit, init }),
          );
        } else {
          stage.push(
            new RepMixerBlock(s.width, { kernel: [k, k], ffnKernel: [7, 7], mlpRatio: cfg.mlpRatio, hidden: s.ffnDims[j], inferenceMode: inf, layerScaleInit: cfg.layerScaleInit, init }),
          );
        }
      }
      network.push(stage);
      const next = stages[i + 1];
      if (next) {
        network.push(new PatchEmbed(s.width, next.width, { patchSize: cfg.downPatchSize, stride: cfg.downStride, useSe: next.seDownsample, seWidth: next.seWidth, inferenceMode: inf, init }));
      }
    });
    this.addModule('network', network);
    const last = stages[stages.length - 1].width;
    const exp = Math.floor(last * cfg.clsRatio);
    this.addModule('conv_exp', new MobileOneBlock(last, exp, 3, { stride: 1, padding: [1, 1], groups: last, useSe: true, seWidth: cfg.convExpSeWidth, inferenceMode: inf, init }));
    this.addModule('head', new GlobalPool2D(exp, projectionDim, init, { bias: cfg.headBias }));
  }

  get patchEmbed(): Sequential {
    return this.childAs('patch_embed', Sequential);
  }

  get network(): Sequential {
    return this.childAs('network', Sequential);
  }

  get convExp(): MobileOneBlock {
    return this.childAs('conv_exp', MobileOneBlock);
  }

  get head(): GlobalPool2D {
    return this.childAs('head', GlobalPool2D);
  }

  forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    return tf.tidy(() => {
      let y = this.sub('patch_embed').call(x, ctx);
      y = this.sub('network').call(y, ctx);
      y = this.sub('conv_exp').call(y, ctx);
      return this.sub('head').call(y, ctx);
    });
  }
}
