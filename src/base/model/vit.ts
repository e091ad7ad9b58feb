import * as tf from '../tf.js';
import { Module, Sequential } from '../nn/module.js';
import { Initializer, zeros } from '../nn/init.js';
import { Conv2d } from '../layers/conv2d.js';
import { BatchNorm2d } from '../layers/batch-norm.js';
import { GELU } from '../layers/activations.js';
import { LayerNorm } from '../layers/layer-norm.js';
import { TransformerEncoder } from '../layers/transformer-encoder.js';
import { PositionalEmbedding } from './positional-embedding.js';
import type { VitConfig } from './configs.js';

/** ConvNormAct of ml-cvnets: `block.{conv,norm,act}` (padding ⌊(k−1)/2⌋). */
class ConvNormAct extends Module {
  readonly block: Sequential;

  constructor(inC: number, outC: number, k: number, stride: number, opts: { bias: boolean; norm: boolean; act: boolean; init: Initializer }) {
    super();
    const p = Math.floor((k - 1) / 2);
    const block = new Sequential();
    // Named children conv / norm / act, as the official nn.Sequential built with add_module.
    block.append('conv', new Conv2d(inC, outC, k, { stride, padding: [p, p], bias: opts.bias, init: opts.init }));
    if (opts.norm) block.append('norm', new BatchNorm2d(outC));
    if (opts.act) block.append('act', new GELU());
    this.block = this.addModule('block', block);
  }

  forward(x: tf.Tensor): tf.Tensor {
    return this.block.call(x);
  }
}

/** SimpleImageProjectionHead: `x @ proj` (proj [in, out]). */
class ProjectionHead extends Module {
  constructor(inDim: number, outDim: number, init: Initializer) {
    super();
    this.addParam('proj', init.normal([inDim, outDim], inDim ** -0.5), { noDecay: false });
  }

  forward(x: tf.Tensor): tf.Tensor {
    return tf.matMul(x as tf.Tensor2D, this.ownParams.get('proj')!.variable as tf.Tensor2D);
  }
}

/**
 * MobileCLIP-B image tower: ViT-B/16 with a conv stem (4×4 s4 → 2×2 s2 → 2×2 s2), learned
 * positions on patch tokens only, CLS prepended afterwards, 12 pre-LN layers, final LN, CLS row
 * → projection.
 */
export class VisionTransformer extends Module {
  readonly cfg: VitConfig;
  readonly patchEmb: Sequential;
  readonly transformer: Sequential;

  constructor(cfg: VitConfig, projectionDim: number, opts: { init?: Initializer } = {}) {
    super();
    this.cfg = cfg;
    const init = opts.init ?? new Initializer(0);
    const e = cfg.embedDim;
    const stem = Math.max(32, Math.floor(e / 4));
    this.addParam('cls_token', zeros([e]), { torchShape: [1, 1, e], noDecay: false });
    this.patchEmb = this.addModule(
      'patch_emb',
      new Sequential([
        new ConvNormAct(3, stem, 4, 4, { bias: false, norm: true, act: true, init }),
        new ConvNormAct(stem, stem, 2, 2, { bias: false, norm: true, act: true, init }),
        new ConvNormAct(stem, e, 2, 2, { bias: true, norm: false, act: false, init }),
      ]),
    );
    const layers = new Sequential();
    for (let i = 0; i < cfg.layers; i++) layers.push(new TransformerEncoder(e, cfg.heads, e * 4, init));
    this.transformer = this.addModule('transformer', layers);
    this.addModule('post_transformer_norm', new LayerNorm(e));
    this.addModule('classifier', new ProjectionHead(e, projectionDim, init));
    this.addModule('pos_embed', new PositionalEmbedding(cfg.posGrid * cfg.posGrid, e, init));
  }

  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const p = this.patchEmb.call(x);
      const [b, h, w, c] = p.shape;
      let tokens = p.reshape([b, h * w, c]);
      tokens = this.child('pos_embed')!.call(tokens);
      const cls = this.ownParams.get('cls_token')!.variable.reshape([1, 1, c]).tile([b, 1, 1]);
      let y = tf.concat([cls, tokens], 1);
      y = this.transformer.call(y);
      y = this.child('post_transformer_norm')!.call(y);
      const clsOut = y.slice([0, 0, 0], [b, 1, c]).reshape([b, c]);
      return this.child('classifier')!.call(clsOut);
    });
  }
}
