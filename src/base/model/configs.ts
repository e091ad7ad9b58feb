import { MclipError } from '../../errors.js';
import { MOBILECLIP2_CONFIGS } from './configs-mobileclip2.js';
import { mciConfig as mci } from './mci-config.js';

/**
 * One attention + FFN layer (text transformer encoders, ViT-B layers). The attention's inner width
 * `heads × headDim` is independent of the residual width it reads and writes (TinyCLIP's pruned models).
 */
export interface TransformerLayerConfig {
  heads: number;
  headDim: number;
  /** Hidden width of the FFN (W₁: residual → ffnDim, W₂: back). */
  ffnDim: number;
  /** Name of the attention kernel (`src/base/nn/attention.ts` registry); default 'softmax'. */
  attention?: string;
  /** Numeric parameters of that kernel (e.g. sigmoid attention's `bias`); default none. */
  attentionParams?: Record<string, number>;
  /** LayerNorm on each head's q and k (`pre_norm_mha.1.{q,k}_norm`, over the head width); default false. */
  qkNorm?: boolean;
  /** LayerNorm on the attention output before the residual add (`pre_norm_mha.2`, hybrid-norm); default false. */
  attnOutNorm?: boolean;
  /** LayerScale on the attention residual (`pre_norm_mha.3.gamma`) with this initial gain; default none. */
  attnLayerScale?: number;
}

/** One layer of a text tower: a transformer encoder, or (`mct`) a Text-RepMixer block with its ConvFFN width. */
export type TextLayerConfig = ({ mixer: 'attention' } & TransformerLayerConfig) | { mixer: 'repmixer'; ffnDim: number };

/** One MCi stage (every block of the stage shares its residual width). */
export interface MciStageConfig {
  depth: number;
  width: number;
  mixer: 'repmixer' | 'attention';
  /** Attention stages: heads and head width of every block's MHSA (inner width heads × headDim). */
  heads?: number;
  headDim?: number;
  /** Attention stages: kernel name (default 'softmax'). */
  attention?: string;
  /** Attention stages: numeric parameters of that kernel (e.g. sigmoid attention's `bias`); default none. */
  attentionParams?: Record<string, number>;
  /** Attention stages: LayerNorm on each head's q and k (`token_mixer.{q,k}_norm`, over the head width); default false. */
  qkNorm?: boolean;
  /** Attention stages: LayerNorm over the channels of the MHSA output before γ₁ and the residual add (`attn_out_norm`, hybrid-norm); default false. */
  attnOutNorm?: boolean;
  /** ConvFFN hidden width of each block (length = depth). */
  ffnDims: number[];
  /** RepCPE before the stage. */
  posEmb: boolean;
  /** SE in the PatchEmbed feeding this stage (stage 0 has no PatchEmbed). */
  seDownsample: boolean;
  /** Hidden width of that SE when it is not the default make_divisible(width/4, 8) (a pruned model). */
  seWidth?: number;
  /** Attention stages: the blocks' pre-norm, BatchNorm (default) or a channel LayerNorm (timm's LayerNorm2d, fastvit_mci3/4). */
  norm?: 'batch' | 'layer';
}

/** MCi (FastViT-style) image tower, as `mobileclip/models/mci.py`. */
export interface MciConfig {
  kind: 'mci';
  /** Official name: mci0, mci1, mci2, or a tiny variant. */
  name: string;
  imageSize: number;
  layers: number[];
  embedDims: number[];
  mlpRatio: number;
  headDim: number;
  /** RepCPE before stage i. */
  posEmbs: boolean[];
  /** SE in the PatchEmbed feeding stage i (index 0 unused). */
  seDownsamples: boolean[];
  repmixerKernel: number;
  downPatchSize: number;
  downStride: number;
  /** conv_exp widening (2.0). */
  clsRatio: number;
  /** Hidden width of conv_exp's SE when it is not the default ⌊C/16⌋ (a pruned model). */
  convExpSeWidth?: number;
  layerScaleInit: number;
  /** The head's linear map has a bias (timm's `ClassifierHead.fc`: open_clip-layout checkpoints); default false. */
  headBias?: boolean;
  /** The stem's 3×3 MobileOne blocks have the 1×1 scale branch (default true; fastvit_mci3/4 have none). */
  stemScaleBranch?: boolean;
  /**
   * Per-stage form (pruned or inherited models). When present it is the truth and `layers`,
   * `embedDims`, `mlpRatio`, `headDim`, `posEmbs`, `seDownsamples` are only the shorthand it came from.
   */
  stages?: MciStageConfig[];
}

/** ViT-B/16 with a convolutional stem (`mobileclip/models/vit.py`). */
export interface VitConfig {
  kind: 'vit';
  name: string;
  imageSize: number;
  embedDim: number;
  layers: number;
  heads: number;
  /** Positional-embedding grid the checkpoint was trained with (224/16 = 14). */
  posGrid: number;
  /** Per-layer form (pruned or inherited models); when present it overrides `layers` and `heads` (and the FFN 4·embedDim). */
  blocks?: TransformerLayerConfig[];
  /** Inner width of the conv stem when it is not the default max(32, ⌊embedDim/4⌋) (a pruned model). */
  stemDim?: number;
  /** timm's ConvStem (`vit_base_mci_224`, open_clip's MobileCLIP-B): no padding in the stem's convs (ml-mobileclip pads the 4×4 one by 1); default false. */
  stemNoPadding?: boolean;
  /** The classifier has a bias (timm's `head`: open_clip-layout checkpoints); default false. */
  headBias?: boolean;
  /**
   * A plain patchify stem (one P×P stride-P conv without bias, `patch_emb.0`) instead of the conv stem, with the
   * CLS row in the positional table (added after the CLS token is prepended) and a LayerNorm before the layers
   * (`pre_transformer_norm`): timm's CLIP ViT (`vit_large_patch14_clip_224`, MobileCLIP2-L-14). Default: none.
   */
  patchSize?: number;
}

export type ImageConfig = MciConfig | VitConfig;

/** Text tower, as `text_cfg` of the official configs. */
export interface TextConfig {
  modelName: 'mct' | 'base';
  contextLength: number;
  vocabSize: number;
  dim: number;
  nTransformerLayers: number;
  nHeads: number;
  ffnMultiplier: number;
  causalMasking: boolean;
  /** Kernel of the `mct` RepMixer blocks (11). */
  repmixerKernel: number;
  /**
   * Per-layer form (pruned or inherited models), in the order of `text_encoder.transformer.<i>`. When
   * present it is the truth and `nTransformerLayers`, `nHeads`, `ffnMultiplier` are only shorthand.
   */
  layers?: TextLayerConfig[];
}

export interface ClipConfig {
  name: string;
  embedDim: number;
  image: ImageConfig;
  text: TextConfig;
}

function text(modelName: 'mct' | 'base', nLayers: number, causal: boolean, over: Partial<TextConfig> = {}): TextConfig {
  return {
    modelName,
    contextLength: 77,
    vocabSize: 49408,
    dim: 512,
    nTransformerLayers: nLayers,
    nHeads: 8,
    ffnMultiplier: 4,
    causalMasking: causal,
    repmixerKernel: 11,
    ...over,
  };
}

const VIT_B16: VitConfig = { kind: 'vit', name: 'vit_b16', imageSize: 224, embedDim: 768, layers: 12, heads: 12, posGrid: 14 };

/** Named configurations: the four official ones and small ones that train on a CPU. */
export const CONFIGS: Record<string, ClipConfig> = {
  mobileclip_s0: { name: 'mobileclip_s0', embedDim: 512, image: mci('mci0', [2, 6, 10, 2], [64, 128, 256, 512]), text: text('mct', 4, false) },
  mobileclip_s1: { name: 'mobileclip_s1', embedDim: 512, image: mci('mci1', [4, 12, 20, 4], [64, 128, 256, 512]), text: text('base', 12, false) },
  mobileclip_s2: { name: 'mobileclip_s2', embedDim: 512, image: mci('mci2', [4, 12, 24, 4], [80, 160, 320, 640]), text: text('base', 12, false) },
  mobileclip_b: { name: 'mobileclip_b', embedDim: 512, image: VIT_B16, text: text('base', 12, true) },
  /** Same block types as S0 at small widths and 64×64 input: trains on 2 CPU cores. */
  mobileclip_tiny: {
    name: 'mobileclip_tiny',
    embedDim: 128,
    image: mci('mci_tiny', [1, 1, 2, 1], [16, 32, 64, 128], 64),
    text: text('mct', 2, false, { vocabSize: 4096, dim: 128, nHeads: 4 }),
  },
  /** The `base` (12-layer style) text tower at small width, with causal masking like MobileCLIP-B. */
  mobileclip_tiny_base: {
    name: 'mobileclip_tiny_base',
    embedDim: 128,
    image: mci('mci_tiny', [1, 1, 2, 1], [16, 32, 64, 128], 64),
    text: text('base', 2, true, { vocabSize: 4096, dim: 128, nHeads: 4 }),
  },
  ...MOBILECLIP2_CONFIGS,
};

export function archNames(): string[] {
  return Object.keys(CONFIGS);
}

/** Looks up a named config (a deep copy, safe to modify). */
export function getConfig(name: string): ClipConfig {
  const c = CONFIGS[name];
  if (!c) throw new MclipError(`unknown arch '${name}' (known: ${archNames().join(', ')})`);
  return structuredClone(c);
}

/** FFN width of a text transformer layer: ceil(dim·mult/16)·16 (official). */
export function textFfnDim(t: TextConfig): number {
  return Math.ceil((t.dim * t.ffnMultiplier) / 16) * 16;
}

/** Every layer of a text tower, expanded from the shorthand when `t.layers` is absent. */
export function textLayers(t: TextConfig): TextLayerConfig[] {
  if (t.layers) return structuredClone(t.layers);
  const attn = (): TextLayerConfig => ({ mixer: 'attention', heads: t.nHeads, headDim: t.dim / t.nHeads, ffnDim: textFfnDim(t) });
  const out: TextLayerConfig[] = [];
  if (t.modelName === 'mct') out.push({ mixer: 'repmixer', ffnDim: t.dim * 4 });
  for (let i = 0; i < t.nTransformerLayers; i++) out.push(attn());
  if (t.modelName === 'mct') out.push({ mixer: 'repmixer', ffnDim: t.dim * 4 });
  return out;
}

/** Every stage of an MCi tower, expanded from the shorthand when `m.stages` is absent. */
export function mciStages(m: MciConfig): MciStageConfig[] {
  if (m.stages) return structuredClone(m.stages);
  const last = m.layers.length - 1;
  return m.layers.map((depth, i) => {
    const width = m.embedDims[i];
    const stage: MciStageConfig = {
      depth,
      width,
      mixer: i === last ? 'attention' : 'repmixer',
      ffnDims: Array.from({ length: depth }, () => Math.floor(width * m.mlpRatio)),
      posEmb: m.posEmbs[i] ?? false,
      seDownsample: m.seDownsamples[i] ?? false,
    };
    if (i === last) {
      stage.heads = width / m.headDim;
      stage.headDim = m.headDim;
    }
    return stage;
  });
}

/** Every layer of a ViT tower, expanded from the shorthand when `v.blocks` is absent. */
export function vitBlocks(v: VitConfig): TransformerLayerConfig[] {
  if (v.blocks) return structuredClone(v.blocks);
  return Array.from({ length: v.layers }, () => ({ heads: v.heads, headDim: v.embedDim / v.heads, ffnDim: v.embedDim * 4 }));
}

/**
 * Converts the official JSON config (`mobileclip/configs/*.json`, or the fixtures' config.json). As the
 * official `TextTransformer`, `n_heads_per_layer` (an integer) and `ffn_multiplier_per_layer` (a number) may
 * also be lists with one entry per transformer layer; uneven lists give the per-layer form `text.layers`.
 */
export function fromOfficialJson(j: unknown, name = 'custom'): ClipConfig {
  if (!isRecord(j) || !isRecord(j.image_cfg) || !isRecord(j.text_cfg) || typeof j.embed_dim !== 'number') {
    throw new MclipError('official config must have embed_dim, image_cfg and text_cfg');
  }
  const im = j.image_cfg.model_name;
  const base = Object.values(CONFIGS).find((c) => c.image.name === im);
  if (!base) throw new MclipError(`image_cfg.model_name '${String(im)}' is not supported (mci0, mci1, mci2, vit_b16)`);
  const t = j.text_cfg;
  const num = (k: string): number => {
    const v = t[k];
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new MclipError(`text_cfg.${k} must be a number`);
    return v;
  };
  const count = (k: string): number => {
    const v = num(k);
    if (!Number.isInteger(v) || v <= 0) throw new MclipError(`text_cfg.${k} must be a positive integer, got ${v}`);
    return v;
  };
  const modelName = t.model_name;
  if (modelName !== 'mct' && modelName !== 'base') throw new MclipError(`text_cfg.model_name must be 'mct' or 'base', got '${String(modelName)}'`);
  const dim = count('dim');
  const nLayers = num('n_transformer_layers');
  if (!Number.isInteger(nLayers) || nLayers < 0) throw new MclipError(`text_cfg.n_transformer_layers must be a non-negative integer, got ${nLayers}`);
  /** One value per transformer layer: a scalar repeated, or a list of exactly nLayers entries. */
  const perLayer = (k: string, what: string, ok: (v: number) => boolean): number[] => {
    const v = t[k];
    if (!Array.isArray(v) && !(typeof v === 'number' && ok(v))) {
      throw new MclipError(`text_cfg.${k} must be ${what} or a list of them (one per transformer layer), got ${JSON.stringify(v) ?? String(v)}`);
    }
    const list: unknown[] = Array.isArray(v) ? v : new Array<unknown>(nLayers).fill(v);
    if (list.length !== nLayers) throw new MclipError(`text_cfg.${k} has ${list.length} entries but n_transformer_layers is ${nLayers}`);
    return list.map((x, i) => {
      if (typeof x !== 'number' || !ok(x)) throw new MclipError(`text_cfg.${k}[${i}] must be ${what}, got ${JSON.stringify(x) ?? String(x)}`);
      return x;
    });
  };
  const heads = perLayer('n_heads_per_layer', 'a positive integer', (x) => Number.isInteger(x) && x > 0);
  const mults = perLayer('ffn_multiplier_per_layer', 'a positive number', (x) => Number.isFinite(x) && x > 0);
  heads.forEach((h, i) => {
    if (dim % h !== 0) throw new MclipError(`text_cfg.n_heads_per_layer${Array.isArray(t.n_heads_per_layer) ? `[${i}]` : ''} = ${h} does not divide dim ${dim}`);
  });
  const image = structuredClone(base.image);
  if (typeof j.image_cfg.image_size === 'number') image.imageSize = j.image_cfg.image_size;
  const text: TextConfig = {
    modelName,
    contextLength: count('context_length'),
    vocabSize: count('vocab_size'),
    dim,
    nTransformerLayers: nLayers,
    nHeads: heads[0] ?? 8,
    ffnMultiplier: mults[0] ?? 4,
    causalMasking: t.causal_masking === true,
    repmixerKernel: 11,
  };
  const uniform = heads.every((h) => h === heads[0]) && mults.every((m) => m === mults[0]);
  if (!uniform) {
    const attn: TextLayerConfig[] = heads.map((h, i) => ({ mixer: 'attention', heads: h, headDim: dim / h, ffnDim: Math.ceil((dim * mults[i]) / 16) * 16 }));
    const rep: TextLayerConfig[] = modelName === 'mct' ? [{ mixer: 'repmixer', ffnDim: dim * 4 }] : [];
    text.layers = [...rep, ...attn, ...structuredClone(rep)];
  }
  return { name, embedDim: j.embed_dim, image, text };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
