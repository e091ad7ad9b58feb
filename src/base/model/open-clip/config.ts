/**
 * The architecture of an open_clip-layout MobileCLIP(2) checkpoint, read off its keys and shapes: the timm
 * FastViT-MCi trunk (stage depths and widths, RepMixer or attention per stage, ConvFFN widths, RepCPE and SE
 * presence, the kernels, the final-conv widening, the head) and the open_clip text tower (vocabulary, context,
 * width, depth, FFN widths, projection). What shapes cannot tell — head counts, causal masking, image size —
 * comes from the named config (`configs-mobileclip2.ts`) whose trunk has exactly these shapes, else the
 * official defaults (64-wide text heads, 32-wide MCi heads, non-causal text, 256 px). A trunk of another kind
 * is a one-line error naming it.
 */
import { isDeepStrictEqual } from 'node:util';
import type { StateDict } from '../../io/tensor-data.js';
import { seBlockWidth, squeezeExciteWidth } from '../../layers/squeeze-excite.js';
import { CONFIGS, mciStages, vitBlocks, type ClipConfig, type ImageConfig, type MciConfig, type MciStageConfig, type TextConfig, type TextLayerConfig, type TransformerLayerConfig, type VitConfig } from '../configs.js';
import { chooseHeads, compactMci, compactText, compactVit, MCI_HEAD_DIM, TEXT_HEAD_DIM, VIT_HEAD_DIM } from '../config-inference.js';
import { vitStemWidth } from '../vit.js';
import { OC_IMAGE, type TextPrefix } from './keys.js';
import { StateShapes } from '../state-shapes.js';

/** A name for the trunk found, for the unsupported-architecture message. */
function trunkName(k: StateShapes): string {
  if (k.any(`${OC_IMAGE}blocks.`)) return 'a timm VisionTransformer-like trunk (blocks.*)';
  if (k.any('visual.transformer.resblocks.')) return "open_clip's own VisionTransformer (visual.transformer.resblocks.*)";
  if (k.any('visual.layer1.')) return 'a ModifiedResNet (visual.layer1.*)';
  const key = k.firstKey('visual.');
  return key ? `an unknown trunk ('${key}', …)` : 'no trunk';
}

function unsupported(k: StateShapes): string {
  return `open_clip checkpoint with an unsupported image trunk: ${trunkName(k)}; supported: timm FastViT-MCi ('visual.trunk.stem.*', 'visual.trunk.stages.*') timm ViT-MCi ('visual.trunk.patch_embed.backbone.*', 'visual.trunk.blocks.*') and timm's CLIP ViT ('visual.trunk.patch_embed.proj', 'visual.trunk.norm_pre')`;
}

/** The blocks of a timm ViT trunk (`blocks.N.attn.qkv`, `blocks.N.mlp.fc1`), contiguous from 0; heads as `base` has them, else 64 wide. */
function timmVitBlocks(k: StateShapes, base: VitConfig | null): TransformerLayerConfig[] {
  const T = OC_IMAGE;
  const baseBlocks = base ? vitBlocks(base) : [];
  const blocks: TransformerLayerConfig[] = [];
  for (const i of k.indices(`${T}blocks.`)) {
    if (i !== blocks.length) k.fail(`ViT block ${blocks.length} is missing (found ${T}blocks.${i})`);
    const p = `${T}blocks.${i}.`;
    const inner = k.need(`${p}attn.qkv.weight`, 2)[0] / 3;
    const h = chooseHeads(inner, baseBlocks[i]?.heads, VIT_HEAD_DIM);
    blocks.push({ heads: h.heads, headDim: h.headDim, ffnDim: k.need(`${p}mlp.fc1.weight`, 2)[0] });
  }
  return blocks;
}

/** timm `vit_base_mci_224`: the MobileCLIP conv stem, pre-LN blocks, final norm, CLS pooling, head with bias. */
function inferVitTrunk(k: StateShapes, base: VitConfig | null): VitConfig {
  const T = OC_IMAGE;
  const embedDim = k.need(`${T}cls_token`, 3)[2];
  const pos = k.need(`${T}pos_embed`, 3);
  const posGrid = Math.round(Math.sqrt(pos[1]));
  if (posGrid * posGrid !== pos[1]) k.fail(`'${T}pos_embed' holds ${pos[1]} positions, not a square grid of patches (a table with a CLS row is not the MobileCLIP ViT)`);
  const blocks = timmVitBlocks(k, base);
  const v: VitConfig = {
    kind: 'vit',
    name: base?.name ?? 'vit_mci_custom',
    imageSize: base?.imageSize ?? 224,
    embedDim,
    layers: blocks.length,
    heads: blocks[0]?.heads ?? embedDim / VIT_HEAD_DIM,
    posGrid,
    blocks,
    stemNoPadding: true,
  };
  const stem = k.need(`${T}patch_embed.backbone.0.conv.weight`, 4);
  if (stem[0] !== vitStemWidth(embedDim)) v.stemDim = stem[0];
  if (k.has(`${T}head.bias`)) v.headBias = true;
  return compactVit(v);
}

/** timm `vit_large_patch14_clip_224`: a patchify conv, CLS + positions, `norm_pre`, pre-LN blocks, final norm, CLS pooling, head. */
function inferClipVitTrunk(k: StateShapes, base: VitConfig | null): VitConfig {
  const T = OC_IMAGE;
  const proj = k.need(`${T}patch_embed.proj.weight`, 4);
  if (k.has(`${T}patch_embed.proj.bias`)) k.fail(`'${T}patch_embed.proj' has a bias: a timm ViT without the CLIP pre-norm, not supported`);
  if (!k.has(`${T}norm_pre.weight`)) k.fail(`no '${T}norm_pre': a timm ViT without the CLIP pre-norm, not supported`);
  if (k.has(`${T}fc_norm.weight`)) k.fail(`'${T}fc_norm' (average-pooled timm ViT) is not supported; MobileCLIP2-L-14 pools the CLS token`);
  const embedDim = k.need(`${T}cls_token`, 3)[2];
  const pos = k.need(`${T}pos_embed`, 3);
  const posGrid = Math.round(Math.sqrt(pos[1] - 1));
  if (posGrid * posGrid + 1 !== pos[1]) k.fail(`'${T}pos_embed' holds ${pos[1]} positions, not a CLS row plus a square grid`);
  const blocks = timmVitBlocks(k, base);
  const v: VitConfig = {
    kind: 'vit',
    name: base?.name ?? 'vit_clip_custom',
    imageSize: base?.imageSize ?? posGrid * proj[2],
    embedDim,
    layers: blocks.length,
    heads: blocks[0]?.heads ?? embedDim / VIT_HEAD_DIM,
    posGrid,
    blocks,
    patchSize: proj[2],
  };
  if (k.has(`${T}head.bias`)) v.headBias = true;
  return compactVit(v);
}

function inferImage(k: StateShapes, base: ImageConfig | null): ImageConfig {
  if (k.has(`${OC_IMAGE}patch_embed.proj.weight`) && k.any(`${OC_IMAGE}blocks.`)) return inferClipVitTrunk(k, base?.kind === 'vit' ? base : null);
  if (k.any(`${OC_IMAGE}patch_embed.backbone.`) && k.any(`${OC_IMAGE}blocks.`)) return inferVitTrunk(k, base?.kind === 'vit' ? base : null);
  return inferTrunk(k, base?.kind === 'mci' ? base : null);
}

function inferTrunk(k: StateShapes, base: MciConfig | null): MciConfig {
  const T = OC_IMAGE;
  if (!k.any(`${T}stages.`) || !k.any(`${T}stem.`)) k.fail(unsupported(k));
  const baseStages = base ? mciStages(base) : [];
  const stages: MciStageConfig[] = [];
  let repKernel: number | undefined;
  let downKernel: number | undefined;
  for (const i of k.indices(`${T}stages.`)) {
    if (i !== stages.length) k.fail(`FastViT stage ${stages.length} is missing (found visual.trunk.stages.${i})`);
    const p = `${T}stages.${i}.`;
    const hasDown = k.any(`${p}downsample.`);
    if (i === 0 && hasDown) k.fail(`'${p}downsample' before the first stage is not supported (its width is the stem's)`);
    if (i > 0 && !hasDown) k.fail(`FastViT stage ${i} has no downsample; every stage after the first needs one`);
    let seDownsample = false;
    let seWidth: number | undefined;
    if (hasDown) {
      const lk = k.need([`${p}downsample.proj.0.large_conv.conv.weight`, `${p}downsample.proj.0.reparam_conv.weight`], 4);
      downKernel ??= lk[2];
      const se = k.get(`${p}downsample.proj.0.se.fc1.weight`);
      seDownsample = se !== undefined;
      seWidth = se?.[0];
    }
    const posEmb = k.has(`${p}pos_emb.pos_enc.weight`) || k.has(`${p}pos_emb.reparam_conv.weight`);
    const blocks = k.indices(`${p}blocks.`);
    if (blocks.length === 0) k.fail(`FastViT stage ${i} has no blocks`);
    const ffnDims: number[] = [];
    let mixer: 'repmixer' | 'attention' | undefined;
    let width = 0;
    let inner: number | undefined;
    let layerNorm = false;
    blocks.forEach((j, n) => {
      const q = `${p}blocks.${j}.`;
      if (j !== n) k.fail(`block ${n} of FastViT stage ${i} is missing`);
      const fc1 = k.need(`${q}mlp.fc1.weight`, 4);
      const qkv = k.get(`${q}token_mixer.qkv.weight`);
      const m = qkv ? 'attention' : 'repmixer';
      if (mixer !== undefined && m !== mixer) k.fail(`FastViT stage ${i} mixes RepMixer and attention blocks`);
      mixer = m;
      if (n > 0 && fc1[1] !== width) k.fail(`FastViT stage ${i} has blocks of widths ${width} and ${fc1[1]}`);
      width = fc1[1];
      ffnDims.push(fc1[0]);
      if (qkv) {
        // BatchNorm2d (fastvit_mci0–2) or LayerNorm2d (fastvit_mci3/4), by its running statistics.
        layerNorm = !k.has(`${q}norm.running_mean`);
        inner = qkv[0] / 3;
      } else {
        const kk = k.need([`${q}token_mixer.mixer.conv_kxk.0.conv.weight`, `${q}token_mixer.reparam_conv.weight`], 4);
        repKernel ??= kk[2];
        if (kk[2] !== repKernel) k.fail(`FastViT RepMixer kernels ${repKernel} and ${kk[2]}; a config has one`);
      }
    });
    const stage: MciStageConfig = { depth: blocks.length, width, mixer: mixer ?? 'repmixer', ffnDims, posEmb, seDownsample };
    if (seDownsample && seWidth !== undefined && seWidth !== squeezeExciteWidth(width)) stage.seWidth = seWidth;
    if (inner !== undefined) {
      const bs = baseStages[i];
      const h = chooseHeads(inner, bs?.mixer === 'attention' ? bs.heads : undefined, MCI_HEAD_DIM);
      stage.heads = h.heads;
      stage.headDim = h.headDim;
      if (layerNorm) stage.norm = 'layer';
    }
    stages.push(stage);
  }
  const last = stages[stages.length - 1];
  const exp = k.need([`${T}final_conv.conv_kxk.0.conv.weight`, `${T}final_conv.reparam_conv.weight`], 4)[0];
  const attn = stages.find((s) => s.mixer === 'attention');
  const m: MciConfig = {
    kind: 'mci',
    name: base?.name ?? 'fastvit_mci_custom',
    imageSize: base?.imageSize ?? 256,
    layers: stages.map((s) => s.depth),
    embedDims: stages.map((s) => s.width),
    mlpRatio: stages[0].ffnDims[0] / stages[0].width,
    headDim: attn?.headDim ?? MCI_HEAD_DIM,
    posEmbs: stages.map((s) => s.posEmb),
    seDownsamples: stages.map((s) => s.seDownsample),
    repmixerKernel: repKernel ?? 3,
    downPatchSize: downKernel ?? 7,
    downStride: base?.downStride ?? 2,
    clsRatio: exp / last.width,
    layerScaleInit: base?.layerScaleInit ?? 1e-5,
    stages,
  };
  const se = k.get(`${T}final_conv.se.fc1.weight`);
  if (se && se[0] !== seBlockWidth(exp)) m.convExpSeWidth = se[0];
  const fc = k.need(`${T}head.fc.weight`, 2);
  if (fc[1] !== exp) k.fail(`'${T}head.fc.weight' reads ${fc[1]} features but the final conv gives ${exp}`);
  if (k.has(`${T}head.fc.bias`)) m.headBias = true;
  // fastvit_mci3/4's stem has no 1×1 scale branch (a fused file cannot tell: the named config's, else with one).
  const unfusedStem = k.has(`${T}stem.0.conv_kxk.0.conv.weight`);
  if (unfusedStem ? !k.has(`${T}stem.0.conv_scale.conv.weight`) : base?.stemScaleBranch === false) m.stemScaleBranch = false;
  return compactMci(m);
}

function inferText(k: StateShapes, prefix: TextPrefix, base: TextConfig | null, causalDefault: boolean): TextConfig {
  const [vocabSize, dim] = k.need(`${prefix}token_embedding.weight`, 2);
  const contextLength = k.need(`${prefix}positional_embedding`, 2)[0];
  const layers: TextLayerConfig[] = [];
  for (const i of k.indices(`${prefix}transformer.resblocks.`)) {
    const p = `${prefix}transformer.resblocks.${i}.`;
    if (i !== layers.length) k.fail(`text layer ${layers.length} is missing (found ${p})`);
    const qkv = k.need(`${p}attn.in_proj_weight`, 2);
    const inner = qkv[0] / 3;
    const ffnDim = k.need(`${p}mlp.c_fc.weight`, 2)[0];
    const h = chooseHeads(inner, base?.nHeads, TEXT_HEAD_DIM);
    layers.push({ mixer: 'attention', heads: h.heads, headDim: h.headDim, ffnDim });
  }
  if (layers.length === 0) k.fail(`no text layers under '${prefix}transformer.resblocks.'`);
  const first = layers[0];
  const t: TextConfig = {
    modelName: 'base',
    contextLength,
    vocabSize,
    dim,
    nTransformerLayers: layers.length,
    nHeads: first.mixer === 'attention' ? first.heads : dim / TEXT_HEAD_DIM,
    ffnMultiplier: first.ffnDim / dim,
    causalMasking: base ? base.causalMasking : causalDefault,
    repmixerKernel: 11,
    layers,
  };
  return compactText(t);
}

/** Our config without vocabulary, context and text depth: what identifies a named config's trunk and widths. */
function trunkOf(c: ClipConfig): unknown {
  // A fused stem cannot tell whether it had a scale branch: that field is the named config's to lend.
  const image = c.image.kind === 'mci' ? { ...compactMci(c.image), name: '', imageSize: 0, stemScaleBranch: undefined } : { ...compactVit(c.image), name: '', imageSize: 0 };
  return { embedDim: c.embedDim, image, textDim: c.text.dim };
}

function inferWith(k: StateShapes, prefix: TextPrefix, base: ClipConfig | null): ClipConfig {
  const image = inferImage(k, base?.image ?? null);
  // Causal masking: the named config's, else open_clip's MobileCLIP defaults (only the ViT-B tower's text is causal).
  const text = inferText(k, prefix, base?.text ?? null, image.kind === 'vit' && image.patchSize === undefined);
  const proj = k.need(`${prefix}text_projection`, 2);
  if (proj[0] !== text.dim) k.fail(`'${prefix}text_projection' has ${proj[0]} rows but the text width is ${text.dim}`);
  const embedDim = proj[1];
  const head = k.need(image.kind === 'mci' ? `${OC_IMAGE}head.fc.weight` : `${OC_IMAGE}head.weight`, 2);
  if (head[0] !== embedDim) k.fail(`the image head maps to ${head[0]} features but the text projection to ${embedDim}`);
  return { name: base?.name ?? 'open_clip_custom', embedDim, image, text };
}

/**
 * The config of an open_clip-layout state dict. A named config whose trunk and widths match lends what shapes
 * do not tell (heads, masking, image size); the name is kept only when the text depth and vocabulary match too.
 */
export function configFromOpenClip(sd: StateDict, prefix: TextPrefix, source: string): ClipConfig {
  const k = new StateShapes(sd, source);
  const guess = inferWith(k, prefix, null);
  for (const c of Object.values(CONFIGS)) {
    if (!c.image.headBias) continue;
    if (!isDeepStrictEqual(trunkOf(c), trunkOf(guess))) continue;
    const r = inferWith(k, prefix, c);
    const same = r.text.nTransformerLayers === c.text.nTransformerLayers && r.text.vocabSize === c.text.vocabSize && r.text.layers === undefined;
    return same ? r : { ...r, name: `${c.name}_custom` };
  }
  return guess;
}

/**
 * A named config (`--arch`) adjusted to the shapes a named architecture leaves free in an open_clip checkpoint:
 * vocabulary, context and projection width. Everything else must then fit (checked by the key mapping).
 */
export function adaptToOpenClip(base: ClipConfig, sd: StateDict, prefix: TextPrefix, source: string): ClipConfig {
  const k = new StateShapes(sd, source);
  const cfg = structuredClone(base);
  const [vocab] = k.need(`${prefix}token_embedding.weight`, 2);
  cfg.text.vocabSize = vocab;
  cfg.text.contextLength = k.need(`${prefix}positional_embedding`, 2)[0];
  cfg.embedDim = k.need(`${prefix}text_projection`, 2)[1];
  return cfg;
}
