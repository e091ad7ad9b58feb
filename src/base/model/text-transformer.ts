import * as tf from '../tf.js';
import { Module, Sequential, captureActive } from '../nn/module.js';
import { Initializer } from '../nn/init.js';
import { Embedding } from '../layers/embedding.js';
import { LayerNorm } from '../layers/layer-norm.js';
import { Dropout } from '../layers/activations.js';
import { RepMixerBlock } from '../layers/repmixer-block.js';
import { TransformerEncoder } from '../layers/transformer-encoder.js';
import { MultiHeadAttention } from '../layers/multi-head-attention.js';
import { PositionalEmbedding } from './positional-embedding.js';
import { textFfnDim, type TextConfig } from './configs.js';

/**
 * Text tower (`mobileclip/text_encoder.py` TextTransformer): token embedding + learned positions
 * (no embed scale) → layers (`base`: transformer encoders; `mct`: RepMixerBlock, encoders,
 * RepMixerBlock) → final LayerNorm over all positions → the row at argmax(token id) (EOT) →
 * `@ projection_layer`. Padding takes part in attention (no key padding mask), as officially.
 */
export class TextTransformer extends Module {
  readonly cfg: TextConfig;
  readonly embeddingLayer: Embedding;
  readonly positionalEmbedding: PositionalEmbedding;
  readonly transformer: Sequential;
  readonly finalLayerNorm: LayerNorm;

  constructor(cfg: TextConfig, projectionDim: number, opts: { inferenceMode?: boolean; init?: Initializer } = {}) {
    super();
    this.cfg = cfg;
    const init = opts.init ?? new Initializer(0);
    this.addParam('projection_layer', init.normal([cfg.dim, projectionDim], cfg.dim ** -0.5), { noDecay: false });
    this.embeddingLayer = this.addModule('embedding_layer', new Embedding(cfg.vocabSize, cfg.dim, init));
    this.positionalEmbedding = this.addModule('positional_embedding', new PositionalEmbedding(cfg.contextLength, cfg.dim, init));
    this.addModule('embedding_dropout', new Dropout());
    const ffn = textFfnDim(cfg);
    const layers = new Sequential();
    const k: [number, number] = [1, cfg.repmixerKernel];
    const repmixer = () => new RepMixerBlock(cfg.dim, { kernel: k, ffnKernel: k, mlpRatio: 4, inferenceMode: opts.inferenceMode, init });
    if (cfg.modelName === 'mct') layers.push(repmixer());
    for (let i = 0; i < cfg.nTransformerLayers; i++) {
      const enc = new TransformerEncoder(cfg.dim, cfg.nHeads, ffn, init);
      enc.attn.causal = cfg.causalMasking;
      layers.push(enc);
    }
    if (cfg.modelName === 'mct') layers.push(repmixer());
    this.transformer = this.addModule('transformer', layers);
    this.finalLayerNorm = this.addModule('final_layer_norm', new LayerNorm(cfg.dim));
  }

  get projection(): tf.Variable {
    return this.ownParams.get('projection_layer')!.variable;
  }

  /** Attention modules of the transformer layers (for plug-ins). */
  attentionModules(): MultiHeadAttention[] {
    const out: MultiHeadAttention[] = [];
    for (const [, m] of this.namedModules()) if (m instanceof MultiHeadAttention) out.push(m);
    return out;
  }

  /** Token embedding + positions: [B, S, C] (hooked as `embedding_dropout` in the fixtures). */
  embed(tokens: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.child('embedding_dropout')!.call(this.positionalEmbedding.call(this.embeddingLayer.call(tokens))));
  }

  /** Per-position features after the final LayerNorm: [B, S, C]. */
  encodeTokens(tokens: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.finalLayerNorm.call(this.transformer.call(this.embed(tokens))));
  }

  /** Rows at the EOT position (first argmax of each token row): [B, C]. */
  pool(features: tf.Tensor, tokens: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      // Flat gather (b·S + argmax) rather than batchDims = 1, which the wasm backend mishandles.
      const [b, s, c] = features.shape as [number, number, number];
      return tf.gather(features.reshape([b * s, c]), this.eotRows(tokens));
    });
  }

  /** Flat indices b·S + argmax(tokens[b]) of the pooled (EOT) rows. */
  eotRows(tokens: tf.Tensor): tf.Tensor1D {
    return tf.tidy(() => {
      const [b, s] = tokens.shape as [number, number];
      return tf.argMax(tokens.toInt(), 1).toInt().add(tf.range(0, b * s, s, 'int32')) as tf.Tensor1D;
    });
  }

  /** tokens [B, S] int32 → projected features [B, projectionDim] (not normalised). */
  forward(tokens: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const blocks = this.transformer.children().map(([, m]) => m);
      const last = blocks[blocks.length - 1];
      let pooled: tf.Tensor;
      if (!this.training && !captureActive() && last instanceof RepMixerBlock) {
        // Inference shortcut (exact): after the last block only the EOT row is used, so its
        // pointwise FFN runs on that row alone (about 12 % of the S0 text MACs).
        let x = this.embed(tokens);
        for (const m of blocks.slice(0, -1)) x = m.call(x);
        pooled = this.finalLayerNorm.call(last.forwardRows(x, this.eotRows(tokens)));
      } else {
        pooled = this.pool(this.encodeTokens(tokens), tokens);
      }
      return tf.matMul(pooled as tf.Tensor2D, this.projection as tf.Tensor2D);
    });
  }
}
