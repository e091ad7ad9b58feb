/**
 * Architecture from tensor shapes: `configFromStateDict` reads every width and depth of a MobileCLIP
 * checkpoint (official key names, unfused or fused/reparameterised) off its state dict, so any of our
 * safetensors or an official `.pt` loads with no config and no `--arch`.
 *
 * What the shapes give: text vocabulary, width, context and projection; the text layer list (RepMixer block
 * or transformer encoder per `text_encoder.transformer.<i>`, each encoder's qkv inner width and FFN width,
 * each RepMixer block's ConvFFN width, the 1×k kernel); the image tower kind (MCi: `network.*`, ViT:
 * `transformer.*`); MCi stage depths and widths, the ConvFFN width of every block, the attention inner width,
 * RepCPE and SE-in-downsampler presence, the RepMixer and PatchEmbed kernels, the conv_exp widening; ViT
 * width, layers, FFN widths and positional grid; the optional parts of a transformer layer (QK-norm, the
 * attention-output norm, LayerScale on the attention residual) from their keys.
 *
 * What they do not give, and where it comes from:
 * - Heads (only heads × head width is stored): from `base` when it has that layer and its head count divides
 *   the inner width; otherwise the official head width: 64 for text and ViT layers, 32 for MCi attention
 *   (the largest width ≤ that which divides the inner width, when it does not).
 * - Image size, causal masking, PatchEmbed stride, layer-scale inits, attention kernel names and parameters:
 *   from `base` (when its image tower is of the same kind), else the official defaults: MCi 256 px and non-causal text
 *   (S0/S1/S2), ViT 224 px and causal text (MobileCLIP-B); stride 2, layer-scale init 1e-5, softmax.
 * - Without `base`, a named config (`CONFIGS`) whose tensors have exactly these shapes (vocabulary and
 *   context aside) serves as the base: official checkpoints and our named models come back as themselves.
 *
 * The result uses the scalar shorthand (`nTransformerLayers`/`nHeads`/`ffnMultiplier`, `layers`/`embedDims`/
 * `mlpRatio`, ViT `layers`/`heads`) whenever it expands to exactly the layers found, so named configs stay
 * readable; the per-layer forms (`text.layers`, `image.stages`, `image.blocks`) otherwise.
 */
import { isDeepStrictEqual } from 'node:util';
import { StateShapes } from './state-shapes.js';
import type { StateDict } from '../io/tensor-data.js';
import { seBlockWidth, squeezeExciteWidth } from '../layers/squeeze-excite.js';
import { vitStemWidth } from './vit.js';
import {
  CONFIGS,
  mciStages,
  textLayers,
  vitBlocks,
  type ClipConfig,
  type ImageConfig,
  type MciConfig,
  type MciStageConfig,
  type TextConfig,
  type TextLayerConfig,
  type TransformerLayerConfig,
  type VitConfig,
} from './configs.js';

const TEXT = 'text_encoder.';
const IMG = 'image_encoder.model.';

/** Official head widths (used when `base` says nothing usable). */
export const TEXT_HEAD_DIM = 64;
export const VIT_HEAD_DIM = 64;
export const MCI_HEAD_DIM = 32;

/**
 * Heads of an attention layer with inner width `inner`: `baseHeads` when it divides `inner`, else the
 * official head width `headDim` (or the largest width below it that divides `inner`).
 */
export function chooseHeads(inner: number, baseHeads: number | undefined, headDim: number): { heads: number; headDim: number } {
  if (baseHeads !== undefined && Number.isInteger(baseHeads) && baseHeads > 0 && inner % baseHeads === 0) return { heads: baseHeads, headDim: inner / baseHeads };
  let d = Math.min(headDim, inner);
  while (d > 1 && inner % d !== 0) d--;
  return { heads: inner / d, headDim: d };
}

type LayerExtras = Pick<TransformerLayerConfig, 'qkNorm' | 'attnOutNorm' | 'attnLayerScale'>;

/** Initial gain of an inferred attention LayerScale when the base has none (the value is only an init). */
export const ATTN_LAYER_SCALE_INIT = 1e-4;

/**
 * The optional parts of a transformer layer at `p`, present when their weights are: QK-norm, hybrid-norm,
 * LayerScale on the attention residual (its initial gain from `base`, else ATTN_LAYER_SCALE_INIT).
 */
function normsOf(s: StateShapes, p: string, base: TransformerLayerConfig | undefined): LayerExtras {
  const out: LayerExtras = {};
  if (s.has(`${p}pre_norm_mha.1.q_norm.weight`)) out.qkNorm = true;
  if (s.has(`${p}pre_norm_mha.2.weight`)) out.attnOutNorm = true;
  if (s.has(`${p}pre_norm_mha.3.gamma`)) out.attnLayerScale = base?.attnLayerScale ?? ATTN_LAYER_SCALE_INIT;
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Text tower

function inferText(s: StateShapes, base: TextConfig | null, causalDefault: boolean): TextConfig {
  const [vocabSize, dim] = s.need(`${TEXT}embedding_layer.weight`, 2);
  const pos = s.get(`${TEXT}positional_embedding.pos_embed.pos_embed`);
  const contextLength = pos && pos.length === 4 ? pos[2] : (base?.contextLength ?? 77);
  const baseLayers = base ? textLayers(base) : [];
  let kernel: number | undefined;
  const layers: TextLayerConfig[] = [];
  for (const i of s.indices(`${TEXT}transformer.`)) {
    if (i !== layers.length) s.fail(`text layer ${layers.length} is missing (found text_encoder.transformer.${i})`);
    const p = `${TEXT}transformer.${i}.`;
    const qkv = s.get(`${p}pre_norm_mha.1.qkv_proj.weight`);
    if (qkv) {
      const inner = qkv[0] / 3;
      if (!Number.isInteger(inner)) s.fail(`'${p}pre_norm_mha.1.qkv_proj.weight' has ${qkv[0]} rows, not a multiple of 3`);
      const ffnDim = s.need(`${p}pre_norm_ffn.1.weight`, 2)[0];
      const b = baseLayers[i];
      const h = chooseHeads(inner, b?.mixer === 'attention' ? b.heads : undefined, TEXT_HEAD_DIM);
      const layer: TextLayerConfig = { mixer: 'attention', heads: h.heads, headDim: h.headDim, ffnDim, ...normsOf(s, p, b?.mixer === 'attention' ? b : undefined) };
      if (b?.mixer === 'attention' && b.attention !== undefined) layer.attention = b.attention;
      if (b?.mixer === 'attention' && b.attentionParams !== undefined) layer.attentionParams = { ...b.attentionParams };
      layers.push(layer);
    } else if (s.any(`${p}token_mixer.`)) {
      const k = s.need([`${p}token_mixer.mixer.rbr_conv.0.conv.weight`, `${p}token_mixer.reparam_conv.weight`], 4);
      if (kernel === undefined) kernel = k[3];
      else if (k[3] !== kernel) s.fail(`text RepMixer blocks have kernels 1×${kernel} and 1×${k[3]}; a config has one`);
      layers.push({ mixer: 'repmixer', ffnDim: s.need(`${p}convffn.fc1.weight`, 4)[0] });
    } else {
      s.fail(`'${p}…' is neither a transformer encoder (pre_norm_mha) nor a RepMixer block (token_mixer)`);
    }
  }
  const first = layers.find((l) => l.mixer === 'attention');
  // The scalar fields: the base's (kept if the per-layer form is needed), else read off the first layer.
  const t: TextConfig = {
    modelName: base?.modelName ?? (layers.some((l) => l.mixer === 'repmixer') ? 'mct' : 'base'),
    contextLength,
    vocabSize,
    dim,
    nTransformerLayers: base?.nTransformerLayers ?? layers.filter((l) => l.mixer === 'attention').length,
    nHeads: base?.nHeads ?? (first?.mixer === 'attention' ? first.heads : 8),
    ffnMultiplier: base?.ffnMultiplier ?? (first ? first.ffnDim / dim : 4),
    causalMasking: base ? base.causalMasking : causalDefault,
    repmixerKernel: kernel ?? base?.repmixerKernel ?? 11,
    layers,
  };
  return compactText(t);
}

/** Whether two FFN multipliers give the same official FFN width ceil(dim·mult/16)·16 (`textFfnDim`). */
function ffnMatches(dim: number, mult: number, exact: number): boolean {
  const w = (m: number) => Math.ceil((dim * m) / 16) * 16;
  return w(mult) === w(exact);
}

/** Equal layer lists, whichever way they were written (an absent `attention` is 'softmax'; undefined fields are absent). */
function sameLayers(a: readonly object[], b: readonly object[]): boolean {
  const plain = (l: object) => Object.fromEntries(Object.entries(l).filter(([k, v]) => v !== undefined && !(k === 'attention' && v === 'softmax')));
  return a.length === b.length && a.every((l, i) => isDeepStrictEqual(plain(l), plain(b[i])));
}

/** The text config in the scalar shorthand when it expands to exactly its layers, else with `layers`. */
export function compactText(t: TextConfig): TextConfig {
  const layers = textLayers(t);
  const attn = layers.filter((l): l is Extract<TextLayerConfig, { mixer: 'attention' }> => l.mixer === 'attention');
  const { layers: _drop, ...rest } = t;
  const c: TextConfig = { ...rest, modelName: layers.some((l) => l.mixer === 'repmixer') ? 'mct' : 'base', nTransformerLayers: attn.length };
  if (attn[0]) {
    c.nHeads = attn[0].heads;
    const exact = attn[0].ffnDim / t.dim;
    if (!ffnMatches(t.dim, c.ffnMultiplier, exact)) c.ffnMultiplier = exact;
  }
  if (sameLayers(textLayers(c), layers)) return c;
  return { ...t, layers };
}

// ---------------------------------------------------------------------------------------------------------
// MCi image tower

interface BlockShape {
  mixer: 'repmixer' | 'attention';
  width: number;
  ffnDim: number;
  inner?: number;
  kernel?: number;
  /** Attention blocks: QK-norm and hybrid-norm present (their weights are). */
  qkNorm?: boolean;
  attnOutNorm?: boolean;
  /** Attention blocks: the pre-norm is a LayerNorm (no running statistics). */
  layerNorm?: boolean;
}

function inferMci(s: StateShapes, base: MciConfig | null): MciConfig {
  const baseStages = base ? mciStages(base) : [];
  const stages: MciStageConfig[] = [];
  let pendingPe = false;
  let pendingSe = false;
  let pendingSeWidth: number | undefined;
  let downs = 0;
  let repKernel: number | undefined;
  let downKernel: number | undefined;
  for (const n of s.indices(`${IMG}network.`)) {
    const p = `${IMG}network.${n}.`;
    if (s.any(`${p}proj.`)) {
      const k = s.need([`${p}proj.0.lkb_origin.conv.weight`, `${p}proj.0.lkb_reparam.weight`], 4);
      downKernel ??= k[2];
      pendingSe = s.has(`${p}proj.0.se.fc1.weight`);
      pendingSeWidth = pendingSe ? s.need(`${p}proj.0.se.fc1.weight`, 4)[0] : undefined;
      downs++;
      if (downs !== stages.length) s.fail(`network.${n} is a downsampler not preceded by a stage`);
      continue;
    }
    if (s.has(`${p}pe.weight`) || s.has(`${p}reparam_conv.weight`)) {
      pendingPe = true;
      continue;
    }
    const blocks: BlockShape[] = [];
    for (const j of s.indices(p)) {
      const q = `${p}${j}.`;
      const fc1 = s.need(`${q}convffn.fc1.weight`, 4);
      const qkv = s.get(`${q}token_mixer.qkv.weight`);
      if (qkv) {
        blocks.push({ mixer: 'attention', width: fc1[1], ffnDim: fc1[0], inner: qkv[0] / 3, qkNorm: s.has(`${q}token_mixer.q_norm.weight`), attnOutNorm: s.has(`${q}attn_out_norm.weight`), layerNorm: !s.has(`${q}norm.running_mean`) });
      } else {
        const k = s.need([`${q}token_mixer.mixer.rbr_conv.0.conv.weight`, `${q}token_mixer.reparam_conv.weight`], 4);
        blocks.push({ mixer: 'repmixer', width: fc1[1], ffnDim: fc1[0], kernel: k[2] });
      }
    }
    if (blocks.length === 0) s.fail(`network.${n} is neither a stage, a downsampler nor a RepCPE`);
    const i = stages.length;
    const b0 = blocks[0];
    for (const b of blocks) {
      if (b.mixer !== b0.mixer) s.fail(`MCi stage ${i + 1} mixes RepMixer and attention blocks, which a config cannot describe`);
      if (b.width !== b0.width) s.fail(`MCi stage ${i + 1} has blocks of widths ${b0.width} and ${b.width}`);
      if (b.inner !== b0.inner) s.fail(`MCi stage ${i + 1} has attention inner widths ${b0.inner} and ${b.inner}; a stage has one`);
      if (b.qkNorm !== b0.qkNorm || b.attnOutNorm !== b0.attnOutNorm) s.fail(`MCi stage ${i + 1} has attention blocks with and without QK-norm or hybrid-norm; a stage has one form`);
      if (b.kernel !== undefined) {
        repKernel ??= b.kernel;
        if (b.kernel !== repKernel) s.fail(`MCi RepMixer kernels ${repKernel} and ${b.kernel}; a config has one`);
      }
    }
    const stage: MciStageConfig = {
      depth: blocks.length,
      width: b0.width,
      mixer: b0.mixer,
      ffnDims: blocks.map((b) => b.ffnDim),
      posEmb: pendingPe,
      seDownsample: i > 0 && pendingSe,
    };
    if (stage.seDownsample && pendingSeWidth !== undefined && pendingSeWidth !== squeezeExciteWidth(stage.width)) stage.seWidth = pendingSeWidth;
    if (b0.inner !== undefined) {
      const bs = baseStages[i];
      const h = chooseHeads(b0.inner, bs?.mixer === 'attention' ? bs.heads : undefined, MCI_HEAD_DIM);
      stage.heads = h.heads;
      stage.headDim = h.headDim;
      if (bs?.mixer === 'attention' && bs.attention !== undefined) stage.attention = bs.attention;
      if (bs?.mixer === 'attention' && bs.attentionParams !== undefined) stage.attentionParams = { ...bs.attentionParams };
      if (b0.qkNorm) stage.qkNorm = true;
      if (b0.attnOutNorm) stage.attnOutNorm = true;
      if (b0.layerNorm) stage.norm = 'layer';
    }
    stages.push(stage);
    pendingPe = false;
    pendingSe = false;
    pendingSeWidth = undefined;
  }
  if (stages.length === 0) s.fail(`no MCi stages under '${IMG}network.'`);
  if (downs !== stages.length - 1) s.fail(`${stages.length} MCi stages but ${downs} downsamplers`);
  if (pendingPe) s.fail('a RepCPE after the last MCi stage');
  const last = stages[stages.length - 1];
  const exp = s.need([`${IMG}conv_exp.rbr_conv.0.conv.weight`, `${IMG}conv_exp.reparam_conv.weight`], 4)[0];
  const attnStage = stages.find((st) => st.mixer === 'attention');
  const m: MciConfig = {
    kind: 'mci',
    name: base?.name ?? 'mci_custom',
    imageSize: base?.imageSize ?? 256,
    layers: base?.layers ?? stages.map((st) => st.depth),
    embedDims: base?.embedDims ?? stages.map((st) => st.width),
    mlpRatio: base?.mlpRatio ?? stages[0].ffnDims[0] / stages[0].width,
    headDim: base?.headDim ?? attnStage?.headDim ?? MCI_HEAD_DIM,
    posEmbs: base?.posEmbs ?? stages.map((st) => st.posEmb),
    seDownsamples: base?.seDownsamples ?? stages.map((st) => st.seDownsample),
    repmixerKernel: repKernel ?? base?.repmixerKernel ?? 3,
    downPatchSize: downKernel ?? base?.downPatchSize ?? 7,
    downStride: base?.downStride ?? 2,
    clsRatio: exp / last.width,
    layerScaleInit: base?.layerScaleInit ?? 1e-5,
    stages,
  };
  const seRd = s.get(`${IMG}conv_exp.se.reduce.weight`);
  if (seRd && seRd[0] !== seBlockWidth(exp)) m.convExpSeWidth = seRd[0];
  if (s.has(`${IMG}head.bias`)) m.headBias = true;
  if (s.has(`${IMG}patch_embed.0.rbr_conv.0.conv.weight`) ? !s.has(`${IMG}patch_embed.0.rbr_scale.conv.weight`) : base?.stemScaleBranch === false) m.stemScaleBranch = false;
  return compactMci(m);
}

/** The MCi config in the scalar shorthand when it expands to exactly its stages, else with `stages`. */
export function compactMci(m: MciConfig): MciConfig {
  const stages = mciStages(m);
  const { stages: _drop, ...rest } = m;
  const c: MciConfig = {
    ...rest,
    layers: stages.map((st) => st.depth),
    embedDims: stages.map((st) => st.width),
    posEmbs: stages.map((st) => st.posEmb),
    seDownsamples: stages.map((st) => st.seDownsample),
  };
  const attn = stages.find((st) => st.mixer === 'attention');
  if (attn?.headDim !== undefined) c.headDim = attn.headDim;
  const s0 = stages[0];
  if (s0 && s0.ffnDims.length > 0 && !stages.every((st) => st.ffnDims.every((f) => f === Math.floor(st.width * c.mlpRatio)))) {
    c.mlpRatio = s0.ffnDims[0] / s0.width;
  }
  if (sameLayers(mciStages(c), stages)) return c;
  return { ...m, stages };
}

// ---------------------------------------------------------------------------------------------------------
// ViT image tower

function inferVit(s: StateShapes, base: VitConfig | null): VitConfig {
  const embedDim = s.need(`${IMG}cls_token`, 3)[2];
  const pos = s.need(`${IMG}pos_embed.pos_embed.pos_embed`, 4);
  // A patchify stem (timm's CLIP ViT) has a LayerNorm before the layers and a CLS row in the positional table.
  const patchStem = s.has(`${IMG}pre_transformer_norm.weight`);
  const patches = patchStem ? pos[2] - 1 : pos[2];
  const posGrid = Math.round(Math.sqrt(patches));
  if (posGrid * posGrid !== patches) s.fail(`'${IMG}pos_embed.pos_embed.pos_embed' holds ${pos[2]} positions, not a square grid${patchStem ? ' plus a CLS row' : ''}`);
  const baseBlocks = base ? vitBlocks(base) : [];
  const blocks: TransformerLayerConfig[] = [];
  for (const i of s.indices(`${IMG}transformer.`)) {
    if (i !== blocks.length) s.fail(`ViT layer ${blocks.length} is missing (found transformer.${i})`);
    const p = `${IMG}transformer.${i}.`;
    const inner = s.need(`${p}pre_norm_mha.1.qkv_proj.weight`, 2)[0] / 3;
    const ffnDim = s.need(`${p}pre_norm_ffn.1.weight`, 2)[0];
    const b = baseBlocks[i];
    const h = chooseHeads(inner, b?.heads, VIT_HEAD_DIM);
    const layer: TransformerLayerConfig = { heads: h.heads, headDim: h.headDim, ffnDim, ...normsOf(s, p, b) };
    if (b?.attention !== undefined) layer.attention = b.attention;
    if (b?.attentionParams !== undefined) layer.attentionParams = { ...b.attentionParams };
    blocks.push(layer);
  }
  const v: VitConfig = {
    kind: 'vit',
    name: base?.name ?? 'vit_custom',
    imageSize: base?.imageSize ?? 224,
    embedDim,
    layers: base?.layers ?? blocks.length,
    heads: base?.heads ?? blocks[0]?.heads ?? embedDim / VIT_HEAD_DIM,
    posGrid,
    blocks,
  };
  const stem = s.get(`${IMG}patch_emb.0.block.conv.weight`);
  if (stem && !patchStem && stem[0] !== vitStemWidth(embedDim)) v.stemDim = stem[0];
  if (s.has(`${IMG}classifier.bias`)) v.headBias = true;
  if (patchStem) v.patchSize = s.need(`${IMG}patch_emb.0.block.conv.weight`, 4)[2];
  if (base?.stemNoPadding) v.stemNoPadding = true;
  return compactVit(v);
}

/** The ViT config in the scalar shorthand when it expands to exactly its blocks, else with `blocks`. */
export function compactVit(v: VitConfig): VitConfig {
  const blocks = vitBlocks(v);
  const { blocks: _drop, ...rest } = v;
  const c: VitConfig = { ...rest, layers: blocks.length };
  if (blocks[0]) c.heads = blocks[0].heads;
  if (sameLayers(vitBlocks(c), blocks)) return c;
  return { ...v, blocks };
}

/** Every part of a config in its most readable exact form (scalar shorthand where it expands to the same layers). */
export function compactConfig(cfg: ClipConfig): ClipConfig {
  const image: ImageConfig = cfg.image.kind === 'mci' ? compactMci(cfg.image) : compactVit(cfg.image);
  return { ...cfg, image, text: compactText(cfg.text) };
}

// ---------------------------------------------------------------------------------------------------------

/** A config without what `--arch` leaves free (vocabulary, context), for structural comparisons. */
function structure(c: ClipConfig): unknown {
  const k = compactConfig(c);
  return { embedDim: k.embedDim, image: k.image, text: { ...k.text, vocabSize: 0, contextLength: 0 } };
}

function infer(s: StateShapes, base: ClipConfig | null): ClipConfig {
  let image: ImageConfig;
  if (s.any(`${IMG}network.`)) image = inferMci(s, base?.image.kind === 'mci' ? base.image : null);
  else if (s.any(`${IMG}transformer.`) || s.has(`${IMG}cls_token`)) image = inferVit(s, base?.image.kind === 'vit' ? base.image : null);
  else s.fail(`no image tower keys ('${IMG}network.*' for MCi, '${IMG}transformer.*' for ViT)`);
  const text = inferText(s, base?.text ?? null, image.kind === 'vit');
  const proj = s.need(`${TEXT}projection_layer`, 2);
  if (proj[0] !== text.dim) s.fail(`'${TEXT}projection_layer' has ${proj[0]} rows but the text width is ${text.dim}`);
  const embedDim = proj[1];
  const head = s.need(image.kind === 'mci' ? `${IMG}head.proj` : `${IMG}classifier.proj`, 2);
  if (head[1] !== embedDim) s.fail(`the image projection is ${head[1]} wide but the text projection ${embedDim}`);
  return { name: base?.name ?? 'custom', embedDim, image, text };
}

/**
 * The architecture of a MobileCLIP state dict (official key names, unfused or fused), every width and depth
 * read off the tensor shapes. `base` (a stored or named config) supplies what shapes cannot tell and is kept
 * wherever it agrees with them; see the file comment for the defaults without it.
 */
export function configFromStateDict(base: ClipConfig | null, sd: StateDict, source: string): ClipConfig {
  const s = new StateShapes(sd, source, ' — is this a MobileCLIP checkpoint?');
  s.need(`${TEXT}embedding_layer.weight`, 2);
  if (base) return infer(s, base);
  const guess = infer(s, null);
  // No base: a named config whose tensors have these shapes lends its heads, image size and masking.
  for (const c of Object.values(CONFIGS)) {
    const r = infer(s, c);
    if (isDeepStrictEqual(structure(r), structure(c))) return r;
  }
  return guess;
}
