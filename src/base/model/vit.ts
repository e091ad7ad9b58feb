import * as tf from '../tf.js';
import { Module, Sequential } from '../nn/module.js';
import { Initializer, zeros } from '../nn/init.js';
import { Conv2d } from '../layers/conv2d.js';
import { BatchNorm2d } from '../layers/batch-norm.js';
import { GELU } from '../layers/activations.js';
import { LayerNorm } from '../layers/layer-norm.js';
import { TransformerEncoder } from '../layers/transformer-encoder.js';
import { PositionalEmbedding } from './positional-embedding.js';
import type { ForwardContext } from '../nn/context.js';
import { vitBlocks, type VitConfig } from './configs.js';

/** ConvNormAct of ml-cvnets: `block.{conv,norm,act}` (padding ⌊(k−1)/2⌋). */
export class ConvNormAct extends Module {
  constructor(inC: number, outC: number, k: number, stride: number, opts: { bias: boolean; norm: boolean; act: boolean; init: Initializer; padding?: number }) {
    super();
    const p = opts.padding ?? Math.floor((k - 1) / 2);
    const block = new Sequential();
    // Named children conv / norm / act, as the official nn.Sequential built with add_module.
    block.append('conv', new Conv2d(inC, outC, k, { stride, padding: [p, p], bias: opts.bias, init: opts.init }));
    if (opts.norm) block.append('norm', new BatchNorm2d(outC));
    if (opts.act) block.append('act', new GELU());
    this.addModule('block', block);
  }

  get block(): Sequential {
    return this.childAs('block', Sequential);
  }

  forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    return this.sub('block').call(x, ctx);
  }
}

/** SimpleImageProjectionHead: `x @ proj` (proj [in, out]; `+ bias` when built with one, timm's head). */
export class ProjectionHead extends Module {
  constructor(inDim: number, outDim: number, init: Initializer, opts: { bias?: boolean } = {}) {
    super();
    this.addParam('proj', init.normal([inDim, outDim], inDim ** -0.5), { noDecay: false });
    if (opts.bias) this.addParam('bias', zeros([outDim]));
  }

  get proj(): tf.Variable {
    return this.param('proj');
  }

  /** The bias added after the projection, or null (ml-mobileclip's head has none). */
  get bias(): tf.Variable | null {
    return this.ownParams.get('bias')?.variable ?? null;
  }

  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const y = tf.matMul(x as tf.Tensor2D, this.proj as tf.Tensor2D);
      const b = this.bias;
      return b ? y.add(b) : y;
    });
  }
}

/** The conv stem's inner width a ViT of width `embedDim` builds by default. */
export function vitStemWidth(embedDim: number): number {
  return Math.max(32, Math.floor(embedDim / 4));
}

/**
 * MobileCLIP-B image tower: ViT-B/16 with a conv stem (4×4 s4 → 2×2 s2 → 2×2 s2), learned
 * positions on patch tokens only, CLS prepended afterwards, 12 pre-LN layers (or the per-layer
 * `blocks`, each with its own heads and FFN width), final LN, CLS row → projection.
 */
export class VisionTransformer extends Module {
  readonly cfg: VitConfig;

  constructor(cfg: VitConfig, projectionDim: number, opts: { init?: Initializer } = {}) {
    super();
    this.cfg = cfg;
    const init = opts.init ?? new Initializer(0);
    const e = cfg.embedDim;
    const stem = cfg.stemDim ?? vitStemWidth(e);
    const p = cfg.patchSize;
    this.addParam('cls_token', zeros([e]), { torchShape: [1, 1, e], noDecay: false });
    this.addModule(
      'patch_emb',
      p !== undefined
        ? new Sequential([new ConvNormAct(3, e, p, p, { bias: false, norm: false, act: false, init, padding: 0 })])
        : new Sequential([
            new ConvNormAct(3, stem, 4, 4, { bias: false, norm: true, act: true, init, padding: cfg.stemNoPadding ? 0 : undefined }),
            new ConvNormAct(stem, stem, 2, 2, { bias: false, norm: true, act: true, init }),
            new ConvNormAct(stem, e, 2, 2, { bias: true, norm: false, act: false, init }),
          ]),
    );
    if (p !== undefined) this.addModule('pre_transformer_norm', new LayerNorm(e));
    const layers = new Sequential();
    for (const l of vitBlocks(cfg)) layers.push(new TransformerEncoder(e, l.heads, l.ffnDim, init, { headDim: l.headDim, kernel: l.attention, kernelParams: l.attentionParams, qkNorm: l.qkNorm, attnOutNorm: l.attnOutNorm, attnLayerScale: l.attnLayerScale }));
    this.addModule('transformer', layers);
    this.addModule('post_transformer_norm', new LayerNorm(e));
    this.addModule('classifier', new ProjectionHead(e, projectionDim, init, { bias: cfg.headBias }));
    this.addModule('pos_embed', new PositionalEmbedding(cfg.posGrid * cfg.posGrid + (p !== undefined ? 1 : 0), e, init));
  }

  get patchEmb(): Sequential {
    return this.childAs('patch_emb', Sequential);
  }

  get transformer(): Sequential {
    return this.childAs('transformer', Sequential);
  }

  get postTransformerNorm(): LayerNorm {
    return this.childAs('post_transformer_norm', LayerNorm);
  }

  get classifier(): ProjectionHead {
    return this.childAs('classifier', ProjectionHead);
  }

  get posEmbed(): PositionalEmbedding {
    return this.childAs('pos_embed', PositionalEmbedding);
  }

  get clsToken(): tf.Variable {
    return this.param('cls_token');
  }

  forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    return tf.tidy(() => {
      const p = this.sub('patch_emb').call(x, ctx);
      const [b, h, w, c] = p.shape;
      let tokens = p.reshape([b, h * w, c]);
      const clsInTable = this.cfg.patchSize !== undefined;
      if (!clsInTable) tokens = this.sub('pos_embed').call(tokens, ctx);
      const cls = this.clsToken.reshape([1, 1, c]).tile([b, 1, 1]);
      let y = tf.concat([cls, tokens], 1);
      if (clsInTable) y = this.sub('pre_transformer_norm').call(this.sub('pos_embed').call(y, ctx), ctx);
      y = this.sub('transformer').call(y, ctx);
      y = this.sub('post_transformer_norm').call(y, ctx);
      const clsOut = y.slice([0, 0, 0], [b, 1, c]).reshape([b, c]);
      return this.sub('classifier').call(clsOut, ctx);
    });
  }
}
