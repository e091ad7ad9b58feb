/**
 * Module tree → ONNX nodes. `OnnxEmitter` holds the graph builder, the primitive ops (conv, linear,
 * norms, GELU, SE, attention) and the towers; each module is emitted by the function registered for
 * its class (`registerEmitter`, ./registry.ts; the built-in layers in ./emitters/), the kernel part of
 * attention by the one registered for the module's kernel name (`registerAttentionEmitter`). Ops follow
 * the eval-mode forward in PyTorch layouts: image maps NCHW, conv weights OIHW, text [B, S, C] (the
 * `mct` RepMixer blocks as 1-D convs on [B, C, S], which is the official BC1S layout without the unit
 * axis). Every shape comes from the weights themselves, so pruned models (uneven widths, heads·d ≠ dim)
 * export as they are.
 *
 * Exact folds done here for speed (methods.md §1.7 (h)): ConvFFN's depthwise conv + BN, layer
 * scales into the preceding conv/linear, the stage-4 pre-attention BN into qkv, the attention
 * scale into q, ViT stem conv + BN; final LayerNorm applied to the pooled rows only.
 */
import * as tf from '../base/tf.js';
import { MclipError } from '../errors.js';
import { Sequential, type Module } from '../base/nn/module.js';
import { Conv2d } from '../base/layers/conv2d.js';
import type { BatchNorm2d } from '../base/layers/batch-norm.js';
import type { LayerNorm } from '../base/layers/layer-norm.js';
import type { KernelBias } from '../base/layers/fuse.js';
import type { AttentionParams } from '../base/nn/attention.js';
import { RepMixerBlock } from '../base/layers/repmixer-block.js';
import { FastViT } from '../base/model/mci.js';
import { VisionTransformer } from '../base/model/vit.js';
import { TextTransformer } from '../base/model/text-transformer.js';
import type { PositionalEmbedding } from '../base/model/positional-embedding.js';
import { GraphBuilder, ai, af, ais, as } from './graph.js';
import { attentionEmitter, emitterFor, type ConvLayout, type EmitLayout } from './registry.js';
import { f32, oihw, ownParam, tidyData } from './weights.js';
import './emitters/index.js';

export type { ConvLayout, EmitLayout } from './registry.js';

export interface ConvSpec {
  /** Kernel in TF.js layout. */
  w: tf.Tensor4D;
  b?: tf.Tensor | null;
  depthwise: boolean;
  stride: number;
  padding: [number, number];
  /** Per-output-channel factor folded into kernel and bias (layer scale). */
  outScale?: tf.Tensor | null;
}

export class OnnxEmitter {
  constructor(readonly g: GraphBuilder) {}

  // ---- primitive ops -------------------------------------------------------------------------

  gelu(x: string): string {
    if (this.g.opset >= 20) return this.g.node('Gelu', [x], { approximate: as('none') }, 'gelu');
    // PyTorch's exported form (ORT fuses it into one Gelu kernel).
    const d = this.g.node('Div', [x, this.g.scalarF32(Math.SQRT2)]);
    const e = this.g.node('Erf', [d]);
    const a = this.g.node('Add', [e, this.g.scalarF32(1)]);
    const m = this.g.node('Mul', [x, a]);
    return this.g.node('Mul', [m, this.g.scalarF32(0.5)], {}, 'gelu');
  }

  conv(x: string, s: ConvSpec, name: string, layout: ConvLayout): string {
    const [kh, kw, ci, co] = s.w.shape;
    const outC = s.depthwise ? ci * co : co;
    const k = tidyData(() => {
      let w = s.w;
      let b: tf.Tensor = s.b ?? tf.zeros([outC]);
      if (s.outScale) {
        const t = s.outScale.reshape([outC]);
        w = (s.depthwise ? w.mul(t.reshape([ci, co])) : w.mul(t)) as tf.Tensor4D;
        b = b.mul(t);
      }
      return { ...oihw(w, s.depthwise), bias: f32(b) };
    });
    const bias = k.bias;
    const group = s.depthwise ? ci : 1;
    if (layout === '1d') {
      if (kh !== 1 || s.padding[0] !== 0) throw new MclipError(`export: ${name}: a sequence conv needs a 1×k kernel, got ${kh}×${kw}`);
      const wn = this.g.initF32(`${name}.weight`, k.data, [k.dims[0], k.dims[1], kw]);
      const bn = this.g.initF32(`${name}.bias`, bias, [outC]);
      return this.g.node('Conv', [x, wn, bn], { kernel_shape: ais([kw]), strides: ais([s.stride]), pads: ais([s.padding[1], s.padding[1]]), group: ai(group) }, name);
    }
    const wn = this.g.initF32(`${name}.weight`, k.data, k.dims);
    const bn = this.g.initF32(`${name}.bias`, bias, [outC]);
    const [ph, pw] = s.padding;
    return this.g.node(
      'Conv',
      [x, wn, bn],
      { kernel_shape: ais([kh, kw]), strides: ais([s.stride, s.stride]), pads: ais([ph, pw, ph, pw]), group: ai(group), dilations: ais([1, 1]) },
      name,
    );
  }

  /** A conv from a folded kernel and bias (disposed here) with `like`'s grouping, stride and padding. */
  foldedConv(x: string, kb: KernelBias, like: { depthwise: boolean; stride: number; padding: [number, number] }, name: string, layout: ConvLayout): string {
    const y = this.conv(x, { w: kb.w, b: kb.b, depthwise: like.depthwise, stride: like.stride, padding: like.padding }, name, layout);
    kb.w.dispose();
    kb.b.dispose();
    return y;
  }

  conv2dModule(c: Conv2d, x: string, name: string, layout: ConvLayout, extra: { outScale?: tf.Tensor | null } = {}): string {
    return this.conv(x, { w: c.weight as tf.Tensor4D, b: c.bias, depthwise: c.depthwise, stride: c.stride, padding: c.padding, outScale: extra.outScale }, name, layout);
  }

  /** y = x @ W (+ b) over the last axis; W in TF.js layout [in, out]; optional output scale. */
  linear(x: string, w: tf.Tensor, b: tf.Tensor | undefined | null, name: string, outScale?: tf.Tensor | null): string {
    const [inD, outD] = w.shape as [number, number];
    const { wd, bd } = tidyData(() => {
      let ww = w;
      let bb: tf.Tensor | null = b ?? null;
      if (outScale) {
        ww = w.mul(outScale.reshape([1, outD]));
        bb = bb ? bb.mul(outScale.reshape([outD])) : null;
      }
      return { wd: f32(ww), bd: bb ? f32(bb) : new Float32Array(0) };
    });
    const wn = this.g.initF32(`${name}.weight`, wd, [inD, outD]);
    const y = this.g.node('MatMul', [x, wn], {}, bd.length ? `${name}.matmul` : name);
    if (!bd.length) return y;
    return this.g.node('Add', [y, this.g.initF32(`${name}.bias`, bd, [outD])], {}, name);
  }

  layerNorm(ln: LayerNorm, x: string, name: string): string {
    const w = this.g.initF32(`${name}.weight`, f32(ownParam(ln, 'weight')), [ownParam(ln, 'weight').size]);
    const b = this.g.initF32(`${name}.bias`, f32(ownParam(ln, 'bias')), [ownParam(ln, 'bias').size]);
    return this.g.node('LayerNormalization', [x, w, b], { axis: ai(-1), epsilon: af(ln.eps) }, name);
  }

  /** Eval BatchNorm on a channel-first tensor (NCHW or [B, C, S]) as Mul + Add. */
  batchNorm(bn: BatchNorm2d, x: string, name: string, layout: ConvLayout): string {
    const { scale, shift } = bn.affine();
    const c = bn.numFeatures;
    const dims = layout === '1d' ? [c, 1] : [c, 1, 1];
    const m = this.g.node('Mul', [x, this.g.initF32(`${name}.scale`, f32(scale), dims)]);
    const y = this.g.node('Add', [m, this.g.initF32(`${name}.shift`, f32(shift), dims)], {}, name);
    scale.dispose();
    shift.dispose();
    return y;
  }

  /** SE: x · σ(expand(relu(reduce(mean(x))))). */
  squeezeExcite(reduce: Conv2d, expand: Conv2d, x: string, name: string, layout: ConvLayout): string {
    const axes = layout === '1d' ? [2] : [2, 3];
    const s = this.g.reduceMean(x, axes, true, `${name}.pool`);
    const r = this.g.node('Relu', [this.conv2dModule(reduce, s, `${name}.reduce`, layout)]);
    const gate = this.g.node('Sigmoid', [this.conv2dModule(expand, r, `${name}.expand`, layout)]);
    return this.g.node('Mul', [x, gate], {}, name);
  }

  /**
   * Self-attention on tokens [B, N, C]: q/k/v matmuls (pre-affine a⊙x+e folded into them, scale
   * folded into q), the kernel `opts.kernel` (its registered attention emitter, e.g. softmax(q·kᵀ + mask)·v),
   * output projection (optional per-channel output scale). With `qkNorm`, each head's q and k are normalised
   * first and the scale multiplies the normalised q. qkv [C, 3·heads·d], out [heads·d, C'].
   */
  attention(
    x: string,
    qkvW: tf.Tensor,
    qkvB: tf.Tensor | undefined | null,
    heads: number,
    outW: tf.Tensor,
    outB: tf.Tensor | undefined | null,
    name: string,
    opts: { kernel: string; kernelParams?: AttentionParams; qkNorm?: { q: LayerNorm; k: LayerNorm } | null; preScale?: tf.Tensor; preShift?: tf.Tensor; causal?: number; outScale?: tf.Tensor | null },
  ): string {
    const kernel = attentionEmitter(opts.kernel, name);
    const [inD, out3] = qkvW.shape as [number, number];
    const hd = out3 / 3;
    if (!Number.isInteger(hd) || hd % heads !== 0) throw new MclipError(`export: ${name}: qkv width ${out3} is not 3 × heads (${heads}) × head dim`);
    const d = hd / heads;
    const scale = d ** -0.5;
    // With QK-norm the scale comes after q's norm, so it is not folded into q's weights.
    const qScale = opts.qkNorm ? 1 : scale;
    const parts = tidyData(() => {
      let W = qkvW;
      let B: tf.Tensor = qkvB ?? tf.zeros([out3]);
      if (opts.preShift) B = B.add(tf.matMul(opts.preShift.reshape([1, inD]), W).reshape([out3]));
      if (opts.preScale) W = W.mul(opts.preScale.reshape([inD, 1]));
      const ws = tf.split(W, 3, 1);
      const bs = tf.split(B, 3, 0);
      return [0, 1, 2].map((i) => ({
        w: f32(i === 0 ? ws[i].mul(qScale) : ws[i]),
        b: f32(i === 0 ? bs[i].mul(qScale) : bs[i]),
      }));
    });
    const proj = (i: number, tag: string, perm: number[]): string => {
      const wn = this.g.initF32(`${name}.${tag}.weight`, parts[i].w, [inD, hd]);
      let y = this.g.node('MatMul', [x, wn]);
      y = this.g.node('Add', [y, this.g.initF32(`${name}.${tag}.bias`, parts[i].b, [hd])]);
      y = this.g.reshape(y, [0, -1, heads, d]);
      return this.g.transpose(y, perm, `${name}.${tag}`);
    };
    let q: string;
    let kT: string;
    if (opts.qkNorm) {
      q = this.g.node('Mul', [this.layerNorm(opts.qkNorm.q, proj(0, 'q', [0, 2, 1, 3]), `${name}.q_norm`), this.g.scalarF32(scale)], {}, `${name}.q_scaled`);
      kT = this.g.transpose(this.layerNorm(opts.qkNorm.k, proj(1, 'k', [0, 2, 1, 3]), `${name}.k_norm`), [0, 1, 3, 2], `${name}.kT`);
    } else {
      q = proj(0, 'q', [0, 2, 1, 3]);
      kT = proj(1, 'k', [0, 2, 3, 1]);
    }
    const v = proj(2, 'v', [0, 2, 1, 3]);
    const mask = opts.causal ? this.causalMask(opts.causal, name) : null;
    let o = kernel(this, { q, kT, v, mask, heads, headDim: d, params: opts.kernelParams ?? {} }, name);
    o = this.g.transpose(o, [0, 2, 1, 3]);
    o = this.g.reshape(o, [0, -1, hd]);
    return this.linear(o, outW, outB, `${name}.out`, opts.outScale);
  }

  // ---- modules -------------------------------------------------------------------------------

  /**
   * Emits `m` applied to `x` (NCHW for image modules, [B,C,S] with layout '1d' for text conv blocks,
   * [B,N,C] with layout 'tokens' for token modules) through the emitter registered for its class
   * (`registerEmitter`).
   */
  module(m: Module, x: string, name: string, layout: EmitLayout = '2d'): string {
    const fn = emitterFor(m);
    if (!fn) throw new MclipError(`export: no ONNX mapping for module '${name}' (${m.constructor.name}; a plug-in layer needs registerEmitter)`);
    return fn(this, m, x, name, layout);
  }

  /** `layout` as a channel-first layout; throws for token sequences (a conv-style module among tokens). */
  convLayout(layout: EmitLayout, name: string): ConvLayout {
    if (layout === 'tokens') throw new MclipError(`export: ${name}: a channel-first layer on a [B, N, C] token sequence`);
    return layout;
  }

  /** Sequence length for causal masks (set by the text/ViT tower emitters); the longest one on a dynamic axis. */
  private currentSeqLen: number | null = null;
  /** The run-time length [1] (int64) of a dynamic sequence axis (a `truncate` text graph), else null. */
  private dynamicSeqLen: string | null = null;
  seqLen(name: string): number {
    if (this.currentSeqLen == null) throw new MclipError(`export: ${name}: causal attention outside a sequence of known length`);
    return this.currentSeqLen;
  }

  /**
   * The additive causal mask of an n-token sequence (0 on and below the diagonal, −∞ above): an [n, n]
   * constant; on a dynamic axis of length L ≤ n its top-left [L, L] corner (the same mask built for L).
   */
  causalMask(n: number, name: string): string {
    const data = new Float32Array(n * n);
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) data[i * n + j] = -Infinity;
    const mask = this.g.initF32(`${name}.causal_mask`, data, [n, n]);
    if (!this.dynamicSeqLen) return mask;
    const ends = this.g.node('Concat', [this.dynamicSeqLen, this.dynamicSeqLen], { axis: ai(0) });
    return this.g.node('Slice', [mask, this.g.constI64([0, 0]), ends, this.g.constI64([0, 1])], {}, `${name}.causal_mask_sliced`);
  }

  // ---- towers --------------------------------------------------------------------------------

  /** Image tower: NCHW `image` → [B, D]. */
  imageTower(model: FastViT | VisionTransformer, x: string, imageSize: [number, number], name = 'image'): string {
    if (model instanceof FastViT) {
      let y = this.module(model.patchEmbed, x, `${name}.patch_embed`);
      y = this.module(model.network, y, `${name}.network`);
      y = this.module(model.convExp, y, `${name}.conv_exp`);
      return this.module(model.head, y, `${name}.head`);
    }
    if (model instanceof VisionTransformer) return this.vit(model, x, imageSize, name);
    throw new MclipError(`export: unsupported image encoder ${(model as Module).constructor.name}`);
  }

  private vit(model: VisionTransformer, x: string, imageSize: [number, number], name: string): string {
    // The conv stem: ConvNormAct wrappers (`i.block.{conv,norm,act}`), each emitted as its block, and the
    // patch grid (4×4 s4 p1, 2×2 s2, 2×2 s2) from the stem's own geometry.
    let p = x;
    let [h, w] = imageSize;
    for (const [i, m] of model.patchEmb.children()) {
      const block = m.child('block');
      const conv = block?.child('conv');
      if (!(block instanceof Sequential) || !(conv instanceof Conv2d)) throw new MclipError(`export: ${name}.patch_emb.${i}: unexpected stem layout (${m.constructor.name})`);
      p = this.module(block, p, `${name}.patch_emb.${i}.block`);
      h = Math.floor((h + 2 * conv.padding[0] - conv.kernel[0]) / conv.stride) + 1;
      w = Math.floor((w + 2 * conv.padding[1] - conv.kernel[1]) / conv.stride) + 1;
    }
    const cls = ownParam(model, 'cls_token');
    const c = cls.size;
    const n = h * w;
    let tokens = this.g.transpose(this.g.reshape(p, [0, c, -1]), [0, 2, 1]);
    const pos = model.child('pos_embed') as PositionalEmbedding;
    // timm's CLIP ViT (`patchSize`): the table has a CLS row, added after the CLS token, then `pre_transformer_norm`.
    const clsInTable = model.cfg.patchSize !== undefined;
    const rows = clsInTable ? n + 1 : n;
    const table = pos.table(rows);
    const addPos = (t: string) => this.g.node('Add', [t, this.g.initF32(`${name}.pos_embed`, f32(table), [rows, c])]);
    if (!clsInTable) tokens = addPos(tokens);
    const batch = this.g.node('Shape', [x], { start: ai(0), end: ai(1) });
    const clsShape = this.g.node('Concat', [batch, this.g.constI64([1, c])], { axis: ai(0) });
    const clsTok = this.g.node('Expand', [this.g.initF32(`${name}.cls_token`, f32(cls), [1, 1, c]), clsShape]);
    let y = this.g.node('Concat', [clsTok, tokens], { axis: ai(1) });
    if (clsInTable) y = this.module(model.child('pre_transformer_norm')!, addPos(y), `${name}.pre_transformer_norm`, 'tokens');
    if (rows !== pos.numEmbeddings) table.dispose();
    this.currentSeqLen = n + 1;
    y = this.module(model.transformer, y, `${name}.transformer`, 'tokens');
    this.currentSeqLen = null;
    // CLS row first, then the (row-wise) final LayerNorm: same values, 1/(N+1) of the work.
    const row = this.g.node('Gather', [y, this.g.constI64([0], [])], { axis: ai(1) });
    const ln = this.module(model.child('post_transformer_norm')!, row, `${name}.post_transformer_norm`, 'tokens');
    return this.linear(ln, ownParam(model.child('classifier')!, 'proj'), model.classifier.bias, `${name}.classifier`);
  }

  /**
   * Text tower: `tokens` [B, S] (int64 or int32) → [B, D]. With `dynamicLength` the tokens are [B, L],
   * L ≤ S (the `truncate` padding policy, ./text-padding.ts): positions P[0:L], the causal mask's [L, L]
   * corner, the RepMixer convolutions zero-padded at the ends of the L slots, as the tfjs tower on a cut batch.
   */
  textTower(t: TextTransformer, tokens: string, name = 'text', opts: { dynamicLength?: boolean } = {}): string {
    const s = t.positionalEmbedding.numEmbeddings;
    const emb = t.embeddingLayer.weight;
    const [vocab, c] = emb.shape as [number, number];
    let x = this.g.node('Gather', [this.g.initF32(`${name}.embedding_layer.weight`, f32(emb), [vocab, c]), tokens], { axis: ai(0) }, `${name}.embed`);
    const table = t.positionalEmbedding.table(s);
    let pos = this.g.initF32(`${name}.positional_embedding`, f32(table), [s, table.shape[1]]);
    if (opts.dynamicLength) {
      this.dynamicSeqLen = this.g.node('Shape', [tokens], { start: ai(1), end: ai(2) }, `${name}.seq_len`);
      pos = this.g.node('Slice', [pos, this.g.constI64([0]), this.dynamicSeqLen, this.g.constI64([0])], {}, `${name}.positional_embedding_sliced`);
    }
    x = this.g.node('Add', [x, pos], {}, `${name}.embedding_dropout`);
    if (s !== t.positionalEmbedding.numEmbeddings) table.dispose();
    this.currentSeqLen = s;
    const ids = this.g.node('Cast', [tokens], { to: ai(6) }); // int32 (ArgMax has no int64 CPU kernel)
    const eot = this.g.node('ArgMax', [ids], { axis: ai(1), keepdims: ai(1), select_last_index: ai(0) }, `${name}.eot_index`);
    /** Rows at the EOT position of a [B, S, C] (or [B, C, S] when !seqFirst) tensor: [B, C]. */
    const pool = (v: string, seqFirst: boolean, base: string): string =>
      this.g.node('GatherND', [seqFirst ? v : this.g.transpose(v, [0, 2, 1]), eot], { batch_dims: ai(1) }, base);
    const blocks = t.transformer.children();
    let seqFirst = true; // [B, S, C]; false: [B, C, S]
    let pooled: string | null = null;
    for (let bi = 0; bi < blocks.length; bi++) {
      const [i, m] = blocks[bi];
      const path = `${name}.transformer.${i}`;
      if (m instanceof RepMixerBlock) {
        if (seqFirst) x = this.g.transpose(x, [0, 2, 1]);
        seqFirst = false;
        if (bi === blocks.length - 1) {
          // Last block: only the EOT row is pooled, so the pointwise FFN (most of the block's
          // cost) runs on that row alone; the mixer and depthwise conv see every position. Exact.
          const y = this.module(m.tokenMixer, x, `${path}.token_mixer`, '1d');
          const f = m.convffn;
          const h = this.foldedConv(y, f.conv.fused(), f.conv.conv, `${path}.convffn.conv`, '1d');
          const yr = pool(y, false, `${path}.eot_row`);
          const hr = pool(h, false, `${path}.convffn.conv.eot_row`);
          const fc = (c: Conv2d) => c.weight.reshape([c.inChannels, c.outChannels]);
          const w1 = fc(f.fc1);
          const w2 = fc(f.fc2);
          const a = this.gelu(this.linear(hr, w1, f.fc1.bias, `${path}.convffn.fc1`));
          const o = this.linear(a, w2, f.fc2.bias, `${path}.convffn.fc2`, m.layerScale);
          tf.dispose([w1, w2]);
          pooled = this.g.node('Add', [yr, o], {}, `${name}.pooled`);
        } else {
          x = this.module(m, x, path, '1d');
        }
      } else {
        if (!seqFirst) x = this.g.transpose(x, [0, 2, 1]);
        seqFirst = true;
        x = this.module(m, x, path, 'tokens');
      }
    }
    this.currentSeqLen = null;
    this.dynamicSeqLen = null;
    // EOT pooling (first argmax of each token row) before the row-wise final LayerNorm.
    pooled ??= pool(x, seqFirst, `${name}.pooled`);
    const ln = this.layerNorm(t.finalLayerNorm, pooled, `${name}.final_layer_norm`);
    return this.linear(ln, t.projection, null, `${name}.projection_layer`);
  }
}

/** Output width of a tower, from its projection weights. */
export function towerOutputDim(m: FastViT | VisionTransformer | TextTransformer): number {
  if (m instanceof TextTransformer) return m.projection.shape[1] as number;
  if (m instanceof FastViT) return ownParam(m.head, 'proj').shape[1] as number;
  return ownParam(m.child('classifier')!, 'proj').shape[1] as number;
}
