/**
 * Module tree → ONNX nodes. Walks the (fused) model with `instanceof` on the layer classes and
 * emits, per module, the ops of its eval-mode forward in PyTorch layouts: image maps NCHW, conv
 * weights OIHW, text [B, S, C] (the `mct` RepMixer blocks as 1-D convs on [B, C, S], which is the
 * official BC1S layout without the unit axis). Every shape comes from the weights themselves, so
 * pruned models (uneven widths, heads·d ≠ dim) export as they are.
 *
 * Exact folds done here for speed (methods.md §1.7 (h)): ConvFFN's depthwise conv + BN, layer
 * scales into the preceding conv/linear, the stage-4 pre-attention BN into qkv, the attention
 * scale into q, ViT stem conv + BN; final LayerNorm applied to the pooled rows only.
 */
import * as tf from '../base/tf.js';
import { MclipError } from '../errors.js';
import { Module, Sequential } from '../base/nn/module.js';
import { softmaxAttention } from '../base/nn/attention.js';
import { Conv2d } from '../base/layers/conv2d.js';
import { BatchNorm2d } from '../base/layers/batch-norm.js';
import { ConvBn } from '../base/layers/conv-bn.js';
import { ConvFFN } from '../base/layers/conv-ffn.js';
import { Linear } from '../base/layers/linear.js';
import { LayerNorm } from '../base/layers/layer-norm.js';
import { Dropout, GELU } from '../base/layers/activations.js';
import { AttentionBlock } from '../base/layers/attention-block.js';
import { MHSA } from '../base/layers/mhsa.js';
import { MultiHeadAttention } from '../base/layers/multi-head-attention.js';
import { TransformerEncoder } from '../base/layers/transformer-encoder.js';
import { MobileOneBlock } from '../base/layers/mobileone-block.js';
import { PatchEmbed } from '../base/layers/patch-embed.js';
import { RepCPE } from '../base/layers/rep-cpe.js';
import { ReparamLargeKernelConv } from '../base/layers/reparam-large-kernel-conv.js';
import { RepMixerBlock } from '../base/layers/repmixer-block.js';
import { RepMixer } from '../base/layers/repmixer.js';
import { SEBlock, SqueezeExcite } from '../base/layers/squeeze-excite.js';
import { foldConvBn } from '../base/layers/fuse.js';
import { FastViT, GlobalPool2D } from '../base/model/mci.js';
import { VisionTransformer } from '../base/model/vit.js';
import { TextTransformer } from '../base/model/text-transformer.js';
import { PositionalEmbedding } from '../base/model/positional-embedding.js';
import { GraphBuilder, ai, af, ais, as } from './graph.js';

/** A parameter of `m` itself (not of a child), by name. */
function ownParam(m: Module, name: string): tf.Tensor {
  const p = m.namedParams().find(([n]) => n === name);
  if (!p) throw new MclipError(`export: ${m.constructor.name} has no parameter '${name}'`);
  return p[1].variable;
}

/**
 * tf.tidy for callbacks that return plain data: tf.tidy walks whatever its callback returns looking for
 * tensors, element by element through typed arrays (about 20 s for the S0 weights); this keeps the result
 * out of that walk.
 */
function tidyData<T>(fn: () => T): T {
  let out!: T;
  tf.tidy(() => {
    out = fn();
  });
  return out;
}

function f32(t: tf.Tensor): Float32Array {
  return Float32Array.from(t.dataSync() as Float32Array);
}

/** TF.js conv kernel (dense HWIO or depthwise [kh,kw,Ci,m]) → PyTorch OIHW data and dims. */
function oihw(w: tf.Tensor4D, depthwise: boolean): { data: Float32Array; dims: number[] } {
  const [kh, kw, ci, co] = w.shape;
  return tidyData(() => {
    if (depthwise) return { data: f32(w.transpose([2, 3, 0, 1])), dims: [ci * co, 1, kh, kw] };
    return { data: f32(w.transpose([3, 2, 0, 1])), dims: [co, ci, kh, kw] };
  });
}

/** Layout of a conv's input: NCHW maps (2-D conv) or [B, C, S] sequences (1-D conv, kh = 1). */
type ConvLayout = '2d' | '1d';

interface ConvSpec {
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
   * folded into q), softmax(q·kᵀ + mask)·v, output projection (optional per-channel output scale).
   */
  attention(
    x: string,
    qkvW: tf.Tensor,
    qkvB: tf.Tensor | undefined | null,
    heads: number,
    outW: tf.Tensor,
    outB: tf.Tensor | undefined | null,
    name: string,
    opts: { preScale?: tf.Tensor; preShift?: tf.Tensor; causal?: number; outScale?: tf.Tensor | null },
  ): string {
    const [inD, out3] = qkvW.shape as [number, number];
    const hd = out3 / 3;
    if (!Number.isInteger(hd) || hd % heads !== 0) throw new MclipError(`export: ${name}: qkv width ${out3} is not 3 × heads (${heads}) × head dim`);
    const d = hd / heads;
    const scale = d ** -0.5;
    const parts = tidyData(() => {
      let W = qkvW;
      let B: tf.Tensor = qkvB ?? tf.zeros([out3]);
      if (opts.preShift) B = B.add(tf.matMul(opts.preShift.reshape([1, inD]), W).reshape([out3]));
      if (opts.preScale) W = W.mul(opts.preScale.reshape([inD, 1]));
      const ws = tf.split(W, 3, 1);
      const bs = tf.split(B, 3, 0);
      return [0, 1, 2].map((i) => ({
        w: f32(i === 0 ? ws[i].mul(scale) : ws[i]),
        b: f32(i === 0 ? bs[i].mul(scale) : bs[i]),
      }));
    });
    const proj = (i: number, tag: string, perm: number[]): string => {
      const wn = this.g.initF32(`${name}.${tag}.weight`, parts[i].w, [inD, hd]);
      let y = this.g.node('MatMul', [x, wn]);
      y = this.g.node('Add', [y, this.g.initF32(`${name}.${tag}.bias`, parts[i].b, [hd])]);
      y = this.g.reshape(y, [0, -1, heads, d]);
      return this.g.transpose(y, perm, `${name}.${tag}`);
    };
    const q = proj(0, 'q', [0, 2, 1, 3]);
    const kT = proj(1, 'k', [0, 2, 3, 1]);
    const v = proj(2, 'v', [0, 2, 1, 3]);
    let logits = this.g.node('MatMul', [q, kT], {}, `${name}.logits`);
    if (opts.causal) {
      const n = opts.causal;
      const mask = new Float32Array(n * n);
      for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) mask[i * n + j] = -Infinity;
      logits = this.g.node('Add', [logits, this.g.initF32(`${name}.causal_mask`, mask, [n, n])]);
    }
    const p = this.g.node('Softmax', [logits], { axis: ai(-1) }, `${name}.softmax`);
    let o = this.g.node('MatMul', [p, v]);
    o = this.g.transpose(o, [0, 2, 1, 3]);
    o = this.g.reshape(o, [0, -1, hd]);
    return this.linear(o, outW, outB, `${name}.out`, opts.outScale);
  }

  // ---- modules -------------------------------------------------------------------------------

  /** Emits `m` applied to `x` (NCHW for image modules, [B,C,S] with layout '1d' for text conv blocks). */
  module(m: Module, x: string, name: string, layout: ConvLayout = '2d'): string {
    if (m instanceof Sequential) return this.sequential(m, x, name, layout);
    if (m instanceof Dropout) return x;
    if (m instanceof GELU) return this.gelu(x);
    if (m instanceof Conv2d) return this.conv2dModule(m, x, name, layout);
    if (m instanceof BatchNorm2d) return this.batchNorm(m, x, name, layout);
    if (m instanceof ConvBn) {
      const kb = m.fused();
      const y = this.conv(x, { w: kb.w, b: kb.b, depthwise: m.conv.depthwise, stride: m.conv.stride, padding: m.conv.padding }, name, layout);
      kb.w.dispose();
      kb.b.dispose();
      return y;
    }
    if (m instanceof MobileOneBlock) return this.mobileOne(m, x, name, layout);
    if (m instanceof ReparamLargeKernelConv) {
      if (!m.lkbReparam) throw notFused(name);
      let y = this.conv2dModule(m.lkbReparam, x, `${name}.lkb_reparam`, layout);
      if (m.se) y = this.squeezeExcite(m.se.fc1, m.se.fc2, y, `${name}.se`, layout);
      return this.gelu(y);
    }
    if (m instanceof PatchEmbed) return this.sequential(m.proj, x, `${name}.proj`, layout);
    if (m instanceof RepCPE) {
      if (m.reparamConv) return this.conv2dModule(m.reparamConv, x, `${name}.reparam_conv`, layout);
      return this.g.node('Add', [this.conv2dModule(m.pe!, x, `${name}.pe`, layout), x], {}, name);
    }
    if (m instanceof RepMixer) {
      if (!m.reparamConv) throw notFused(name);
      return this.conv2dModule(m.reparamConv, x, `${name}.reparam_conv`, layout);
    }
    if (m instanceof RepMixerBlock) {
      const y = this.module(m.tokenMixer, x, `${name}.token_mixer`, layout);
      return this.convFfnResidual(m.convffn, y, m.layerScale, `${name}.convffn`, layout);
    }
    if (m instanceof ConvFFN) return this.convFfn(m, x, name, layout, null);
    if (m instanceof SEBlock) return this.squeezeExcite(m.reduce, m.expand, x, name, layout);
    if (m instanceof SqueezeExcite) return this.squeezeExcite(m.fc1, m.fc2, x, name, layout);
    if (m instanceof AttentionBlock) return this.attentionBlock(m, x, name);
    if (m instanceof GlobalPool2D) {
      const pooled = this.g.reduceMean(x, [2, 3], false, `${name}.pool`);
      return this.linear(pooled, ownParam(m, 'proj'), null, `${name}.proj`);
    }
    // Token-sequence modules ([B, N, C]).
    if (m instanceof LayerNorm) return this.layerNorm(m, x, name);
    if (m instanceof Linear) return this.linear(x, m.weight, m.bias, name);
    if (m instanceof MultiHeadAttention) {
      checkSoftmax(m.attentionFn, name);
      return this.attention(x, m.qkvProj.weight, m.qkvProj.bias, m.numHeads, m.outProj.weight, m.outProj.bias, name, {
        causal: m.causal ? this.seqLen(name) : undefined,
      });
    }
    if (m instanceof TransformerEncoder) {
      const y = this.g.node('Add', [x, this.module(m.preNormMha, x, `${name}.pre_norm_mha`)], {}, `${name}.mha_residual`);
      return this.g.node('Add', [y, this.module(m.preNormFfn, y, `${name}.pre_norm_ffn`)], {}, name);
    }
    if (m.constructor.name === 'ConvNormAct' && m.child('block') instanceof Sequential) return this.sequential(m.child('block') as Sequential, x, `${name}.block`, layout);
    throw new MclipError(`export: no ONNX mapping for module '${name}' (${m.constructor.name})`);
  }

  /** Sequence length for causal masks (set by the text/ViT tower emitters). */
  private currentSeqLen: number | null = null;
  private seqLen(name: string): number {
    if (this.currentSeqLen == null) throw new MclipError(`export: ${name}: causal attention outside a sequence of known length`);
    return this.currentSeqLen;
  }

  private sequential(s: Sequential, x: string, name: string, layout: ConvLayout): string {
    const kids = s.children();
    let y = x;
    for (let i = 0; i < kids.length; i++) {
      const [n, m] = kids[i];
      const next = kids[i + 1]?.[1];
      // Conv2d followed by an eval BatchNorm2d (ViT stem): one conv.
      if (m instanceof Conv2d && next instanceof BatchNorm2d) {
        const kb = foldConvBn(m, next);
        y = this.conv(y, { w: kb.w, b: kb.b, depthwise: m.depthwise, stride: m.stride, padding: m.padding }, `${name}.${n}`, layout);
        kb.w.dispose();
        kb.b.dispose();
        i++;
        continue;
      }
      y = this.module(m, y, `${name}.${n}`, layout);
    }
    return y;
  }

  private mobileOne(m: MobileOneBlock, x: string, name: string, layout: ConvLayout): string {
    const kb = m.fusedKernelBias();
    let y = this.conv(x, { w: kb.w, b: kb.b, depthwise: m.groups !== 1, stride: m.stride, padding: m.padding }, `${name}.reparam_conv`, layout);
    kb.w.dispose();
    kb.b.dispose();
    if (m.se) y = this.squeezeExcite(m.se.reduce, m.se.expand, y, `${name}.se`, layout);
    return m.useAct ? this.gelu(y) : y;
  }

  /** fc2(GELU(fc1(BN(dwconv(x))))) with BN folded into the dwconv and `outScale` into fc2. */
  private convFfn(f: ConvFFN, x: string, name: string, layout: ConvLayout, outScale: tf.Tensor | null): string {
    const kb = f.conv.fused();
    let y = this.conv(x, { w: kb.w, b: kb.b, depthwise: f.conv.conv.depthwise, stride: f.conv.conv.stride, padding: f.conv.conv.padding }, `${name}.conv`, layout);
    kb.w.dispose();
    kb.b.dispose();
    y = this.gelu(this.conv2dModule(f.fc1, y, `${name}.fc1`, layout));
    return this.conv2dModule(f.fc2, y, `${name}.fc2`, layout, { outScale });
  }

  /** x + γ ⊙ ConvFFN(x), γ folded into fc2. */
  private convFfnResidual(f: ConvFFN, x: string, gamma: tf.Tensor, name: string, layout: ConvLayout): string {
    return this.g.node('Add', [x, this.convFfn(f, x, name, layout, gamma)], {}, `${name}.residual`);
  }

  /** x + γ₁ ⊙ MHSA(BN(x)); x + γ₂ ⊙ ConvFFN(x), on NCHW maps (BN folded into qkv, γ into the projections). */
  private attentionBlock(m: AttentionBlock, x: string, name: string): string {
    const mh = m.tokenMixer;
    checkSoftmax(mh.attentionFn, `${name}.token_mixer`);
    const c = m.norm.numFeatures;
    const shape = this.g.node('Shape', [x], {}, `${name}.shape`);
    const tokens = this.g.transpose(this.g.reshape(x, [0, c, -1]), [0, 2, 1], `${name}.tokens`);
    const { scale, shift } = m.norm.affine();
    const g1 = ownParam(m, 'layer_scale_1');
    const o = this.attention(tokens, mh.qkv.weight, mh.qkv.bias, mh.numHeads, mh.proj.weight, mh.proj.bias, `${name}.token_mixer`, {
      preScale: scale,
      preShift: shift,
      outScale: g1,
    });
    scale.dispose();
    shift.dispose();
    // Back to NCHW; the residual needs the projection width to equal C, so x's shape fits.
    const back = this.g.reshape(this.g.transpose(o, [0, 2, 1]), shape);
    const y = this.g.node('Add', [x, back], {}, `${name}.mha_residual`);
    return this.convFfnResidual(m.convffn, y, ownParam(m, 'layer_scale_2'), `${name}.convffn`, '2d');
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
    const p = this.module(model.patchEmb, x, `${name}.patch_emb`);
    const cls = ownParam(model, 'cls_token');
    const c = cls.size;
    // Patch grid of the stem (4×4 s4 p1, 2×2 s2, 2×2 s2) from the stem's own geometry.
    let [h, w] = imageSize;
    for (const [, m] of model.patchEmb.children()) {
      const conv = (m.child('block') as Sequential | undefined)?.child('conv');
      if (!(conv instanceof Conv2d)) throw new MclipError(`export: ${name}.patch_emb: unexpected stem layout`);
      h = Math.floor((h + 2 * conv.padding[0] - conv.kernel[0]) / conv.stride) + 1;
      w = Math.floor((w + 2 * conv.padding[1] - conv.kernel[1]) / conv.stride) + 1;
    }
    const n = h * w;
    let tokens = this.g.transpose(this.g.reshape(p, [0, c, -1]), [0, 2, 1]);
    const pos = model.child('pos_embed') as PositionalEmbedding;
    const table = pos.table(n);
    tokens = this.g.node('Add', [tokens, this.g.initF32(`${name}.pos_embed`, f32(table), [n, c])]);
    if (n !== pos.numEmbeddings) table.dispose();
    const batch = this.g.node('Shape', [x], { start: ai(0), end: ai(1) });
    const clsShape = this.g.node('Concat', [batch, this.g.constI64([1, c])], { axis: ai(0) });
    const clsTok = this.g.node('Expand', [this.g.initF32(`${name}.cls_token`, f32(cls), [1, 1, c]), clsShape]);
    let y = this.g.node('Concat', [clsTok, tokens], { axis: ai(1) });
    this.currentSeqLen = n + 1;
    y = this.module(model.transformer, y, `${name}.transformer`);
    this.currentSeqLen = null;
    // CLS row first, then the (row-wise) final LayerNorm: same values, 1/(N+1) of the work.
    const row = this.g.node('Gather', [y, this.g.constI64([0], [])], { axis: ai(1) });
    const ln = this.module(model.child('post_transformer_norm')!, row, `${name}.post_transformer_norm`);
    return this.linear(ln, ownParam(model.child('classifier')!, 'proj'), null, `${name}.classifier`);
  }

  /** Text tower: `tokens` [B, S] (int64 or int32) → [B, D]. */
  textTower(t: TextTransformer, tokens: string, name = 'text'): string {
    const s = t.positionalEmbedding.numEmbeddings;
    const emb = t.embeddingLayer.weight;
    const [vocab, c] = emb.shape as [number, number];
    let x = this.g.node('Gather', [this.g.initF32(`${name}.embedding_layer.weight`, f32(emb), [vocab, c]), tokens], { axis: ai(0) }, `${name}.embed`);
    const table = t.positionalEmbedding.table(s);
    x = this.g.node('Add', [x, this.g.initF32(`${name}.positional_embedding`, f32(table), [s, table.shape[1]])], {}, `${name}.embedding_dropout`);
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
          const kb = f.conv.fused();
          const h = this.conv(y, { w: kb.w, b: kb.b, depthwise: f.conv.conv.depthwise, stride: f.conv.conv.stride, padding: f.conv.conv.padding }, `${path}.convffn.conv`, '1d');
          kb.w.dispose();
          kb.b.dispose();
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
        x = this.module(m, x, path);
      }
    }
    this.currentSeqLen = null;
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

function notFused(name: string): MclipError {
  return new MclipError(`export: ${name} is not reparameterised; fuse the model first (reparameterize)`);
}

function checkSoftmax(fn: unknown, name: string): void {
  if (fn !== softmaxAttention) throw new MclipError(`export: ${name} uses a custom attention function; only softmax attention is exported`);
}
