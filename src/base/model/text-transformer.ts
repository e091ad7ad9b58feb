import * as tf from '../tf.js';
import { Module, Sequential } from '../nn/module.js';
import type { ForwardContext } from '../nn/context.js';
import { Initializer } from '../nn/init.js';
import { Embedding } from '../layers/embedding.js';
import { LayerNorm } from '../layers/layer-norm.js';
import { Dropout } from '../layers/activations.js';
import { RepMixerBlock } from '../layers/repmixer-block.js';
import { TransformerEncoder } from '../layers/transformer-encoder.js';
import { MultiHeadAttention } from '../layers/multi-head-attention.js';
import { PositionalEmbedding } from './positional-embedding.js';
import { textLayers, type TextConfig } from './configs.js';
import { TEXT_TOKENS, eotFlatRows, eotIndex, textContext, type TextTokenState } from './text-context.js';

/**
 * Text tower (`mobileclip/text_encoder.py` TextTransformer): token embedding + learned positions
 * (no embed scale) → layers (`base`: transformer encoders; `mct`: RepMixerBlock, encoders,
 * RepMixerBlock; or any per-layer list) → final LayerNorm over all positions → the row at the
 * end-of-text index → `@ projection_layer`. Padding takes part in attention (no key padding mask), as
 * officially. The token state (ids, EOT index, kept positions, token sizes) travels with the hidden
 * states in the forward context (`TEXT_TOKENS`), so a layer that reduces tokens keeps pooling right.
 */
export class TextTransformer extends Module {
  readonly cfg: TextConfig;

  constructor(cfg: TextConfig, projectionDim: number, opts: { inferenceMode?: boolean; init?: Initializer } = {}) {
    super();
    this.cfg = cfg;
    const init = opts.init ?? new Initializer(0);
    this.addParam('projection_layer', init.normal([cfg.dim, projectionDim], cfg.dim ** -0.5), { noDecay: false });
    this.addModule('embedding_layer', new Embedding(cfg.vocabSize, cfg.dim, init));
    this.addModule('positional_embedding', new PositionalEmbedding(cfg.contextLength, cfg.dim, init));
    this.addModule('embedding_dropout', new Dropout());
    const layers = new Sequential();
    const k: [number, number] = [1, cfg.repmixerKernel];
    for (const l of textLayers(cfg)) {
      if (l.mixer === 'repmixer') {
        layers.push(new RepMixerBlock(cfg.dim, { kernel: k, ffnKernel: k, mlpRatio: 4, hidden: l.ffnDim, inferenceMode: opts.inferenceMode, init }));
      } else {
        const enc = new TransformerEncoder(cfg.dim, l.heads, l.ffnDim, init, { headDim: l.headDim, kernel: l.attention, kernelParams: l.attentionParams, qkNorm: l.qkNorm, attnOutNorm: l.attnOutNorm, attnLayerScale: l.attnLayerScale });
        enc.attn.causal = cfg.causalMasking;
        layers.push(enc);
      }
    }
    this.addModule('transformer', layers);
    this.addModule('final_layer_norm', new LayerNorm(cfg.dim));
  }

  get embeddingLayer(): Embedding {
    return this.childAs('embedding_layer', Embedding);
  }

  get positionalEmbedding(): PositionalEmbedding {
    return this.childAs('positional_embedding', PositionalEmbedding);
  }

  get transformer(): Sequential {
    return this.childAs('transformer', Sequential);
  }

  get finalLayerNorm(): LayerNorm {
    return this.childAs('final_layer_norm', LayerNorm);
  }

  get projection(): tf.Variable {
    return this.param('projection_layer');
  }

  /** Attention modules of the transformer layers (for plug-ins). */
  attentionModules(): MultiHeadAttention[] {
    const out: MultiHeadAttention[] = [];
    for (const [, m] of this.namedModules()) if (m instanceof MultiHeadAttention) out.push(m);
    return out;
  }

  /** Token embedding + positions: [B, S, C] (hooked as `embedding_dropout` in the fixtures). */
  embed(tokens: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    return tf.tidy(() => this.sub('embedding_dropout').call(this.sub('positional_embedding').call(this.sub('embedding_layer').call(tokens, ctx), ctx), ctx));
  }

  /**
   * Per-position features after the final LayerNorm: [B, N, C] (N = S unless a layer reduced tokens; the
   * state is in `ctx`). With a `ctx` the caller runs the pass and ends it (`ctx.endPass()`); without one the
   * pass is this call's own.
   */
  encodeTokens(tokens: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    const c = ctx ?? textContext(tokens as tf.Tensor2D);
    try {
      return tf.tidy(() => this.sub('final_layer_norm').call(this.sub('transformer').call(this.embed(tokens, c), c), c));
    } finally {
      if (!ctx) c.endPass();
    }
  }

  /** Rows at the EOT position of features [B, N, C]: from the state's EOT index, else the first arg-max of `tokens`. */
  pool(features: tf.Tensor, tokens: tf.Tensor, state?: TextTokenState): tf.Tensor {
    return tf.tidy(() => {
      // Flat gather (b·N + eot) rather than batchDims = 1, which the wasm backend mishandles.
      const [b, n, c] = features.shape as [number, number, number];
      const s = state ?? { tokens: tokens as tf.Tensor2D, eot: eotIndex(tokens), positions: null, sizes: null };
      return tf.gather(features.reshape([b * n, c]), eotFlatRows(s, n));
    });
  }

  /**
   * tokens [B, S] int32 → projected features [B, projectionDim] (not normalised). `ctx` (optional)
   * receives the text state; the forward is one pass: the tensors set in the context during it (the EOT
   * index, kept positions, sizes — whichever hook made them) live until pooling is done, and the pass ends
   * when the forward returns (`ctx.endPass()`; a hook that needs them later clones and keeps them).
   */
  forward(tokens: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    const c = textContext(tokens as tf.Tensor2D, ctx);
    try {
      return this.pass(tokens, c);
    } finally {
      c.endPass();
    }
  }

  private pass(tokens: tf.Tensor, c: ForwardContext): tf.Tensor {
    return tf.tidy(() => {
      const blocks = this.transformer.modules();
      const last = blocks[blocks.length - 1];
      let pooled: tf.Tensor;
      if (!this.training && last instanceof RepMixerBlock && !last.hasHooks() && !this.finalLayerNorm.hasHooks() && !this.transformer.hasOwnHooks()) {
        // Inference shortcut (exact): after the last block only the EOT row is used, so its
        // pointwise FFN runs on that row alone (about 12 % of the S0 text MACs). Hooks on the layers
        // before it (token reducers, a grid restore) run as usual; a hook on the last block, the final
        // norm or the layer list would miss what the shortcut skips, so any of those turns it off.
        let x = this.embed(tokens, c);
        for (const m of blocks.slice(0, -1)) x = m.call(x, c);
        pooled = this.finalLayerNorm.call(last.forwardRows(x, eotFlatRows(c.require(TEXT_TOKENS), x.shape[1] as number)), c);
      } else {
        const features = this.encodeTokens(tokens, c);
        pooled = this.pool(features, tokens, c.require(TEXT_TOKENS));
      }
      return tf.matMul(pooled as tf.Tensor2D, this.projection as tf.Tensor2D);
    });
  }
}
