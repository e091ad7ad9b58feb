/**
 * From ViT masks to a physically smaller ViT image tower (methods.md §3.7 steps 2–3), on official-layout state
 * dicts like manual inheritance (`inherit.ts`) and text pruning (`prune-text.ts`), whose transformer-layer
 * surgery this is: the ViT's blocks are the same `TransformerEncoder`s and its hidden mask plays the text
 * tower's, with the CLS row, the patch tokens and the positions in place of the token and positional tables.
 *
 * Step 2, the surviving soft values folded into the weights (z = z^emb, zh = z^head, zi = z^int):
 * - the stream's origin: the CLS token × z, the positional table's columns × z and the stem's last conv
 *   (`patch_emb.2`, which writes the patch tokens) output rows and bias × z;
 * - every block: `out_proj` columns of head h × zh_h, its rows and bias × z; `pre_norm_ffn.4` columns × zi,
 *   its rows and bias × z.
 *
 * Step 3, removal: a pruned head's d_h rows of q, k and v (weights and bias) and its `out_proj` columns; a
 * pruned FFN unit's row of W₁/b₁ and column of W₂; a pruned hidden channel's column of every reader (qkv,
 * W₁), row of every writer (out_proj, W₂, their biases), its LayerNorm γ/β in every block and in
 * `post_transformer_norm`, its CLS entry, positional column, output channel of the stem's last conv and row of
 * the projection (`classifier.proj`). The LayerNorms then normalise over the kept width, as the masked LayerNorm
 * did. The stem's first two convs and BNs are kept whole.
 *
 * A block whose heads are all pruned keeps one head one channel wide (`heads: 1, headDim: 1`) with zero q, k,
 * v and zero `out_proj` column, and an FFN with every unit pruned one unit with zero weights, as in
 * `prune-text.ts` (`TransformerLayerConfig` has no attention- or FFN-free block). A hidden mask that prunes
 * every channel is an error.
 *
 * The residual width: `VitConfig.embedDim` becomes the kept width and `image.blocks` holds every block's heads,
 * head width and FFN width. The stem keeps the source's inner width (exact; it is not masked), which may differ
 * from the default a narrower ViT derives (max(32, ⌊embedDim/4⌋)): the config says so (`VitConfig.stemDim`,
 * read off the shapes by `configFromStateDict`), so every loader builds the pruned model from its config alone.
 *
 * Head counts, which no shape fixes, travel in the returned config (the input's heads minus the pruned ones),
 * the `base` of `configFromStateDict`; the text tower and the logit scale are passed through untouched.
 */
import { MclipError } from '../../errors.js';
import type { StateDict, TensorData } from '../../base/io/tensor-data.js';
import { toFloat32 } from '../../base/io/tensor-data.js';
import { CLIP } from '../../base/model/clip.js';
import { configFromStateDict, compactVit } from '../../base/model/config-inference.js';
import { vitBlocks, type ClipConfig, type TransformerLayerConfig, type VitConfig } from '../../base/model/configs.js';
import { ConvNormAct } from '../../base/model/vit.js';
import { Sequential } from '../../base/nn/module.js';
import { Initializer } from '../../base/nn/init.js';
import { loadStateDict, exportStateDict } from '../../base/model/state-dict.js';
import type { ViTMaskValues } from './vit-masks.js';
import { kept, maskValues, take, type Take } from './take.js';
import { pruneTransformerLayerKey } from './prune-transformer-layer.js';

export interface PrunedViTStateDict {
  /** Official-layout state dict with the smaller ViT (float32 image tensors; the text tower's, the logit scale and the BatchNorm counters shared with the input). */
  stateDict: StateDict;
  /** Its architecture (width, per-block heads and widths; `name` + '_pruned'), read back by `configFromStateDict`; the stem width included. */
  config: ClipConfig;
}

export interface PrunedViT extends PrunedViTStateDict {
  /** A new model of `config` with `stateDict` loaded (the source's train/eval mode). */
  model: CLIP;
}

const IMG = 'image_encoder.model.';
const STEM_IN = `${IMG}patch_emb.0.block.conv.weight`;

const checkValues = (v: Float32Array | undefined, n: number, name: string): Float32Array => maskValues('pruneViT', v, n, name);

/** How one ViT block shrinks. */
interface BlockPlan {
  src: TransformerLayerConfig;
  /** Kept heads and FFN units, and the block's masks (ones where absent). */
  heads: number[];
  zHeads: Float32Array;
  units: number[];
  zFfn: Float32Array;
  /** The all-pruned fallback is in use (one head of width 1 / one unit, zero weights). */
  noHeads: boolean;
  noUnits: boolean;
}

/**
 * The smaller state dict and config for ViT masks `masks` on `sd` (official layout) of architecture `config`
 * (e.g. `configFromStateDict` of it; its blocks give the head counts).
 */
export function pruneViTStateDict(sd: StateDict, config: ClipConfig, masks: ViTMaskValues): PrunedViTStateDict {
  const ti = config.image;
  if (ti.kind !== 'vit') throw new MclipError(`pruneViT: the image tower is ${ti.kind}; ViT masks apply to ViT image towers`);
  const blocks = vitBlocks(ti);
  if (masks.blocks.length !== blocks.length) {
    throw new MclipError(`pruneViT: ${masks.blocks.length} block entries for a ViT of ${blocks.length} blocks (use null for an unmasked block)`);
  }
  const z = checkValues(masks.hidden, ti.embedDim, 'hidden');
  const hid = kept(z);
  if (hid.length === 0) throw new MclipError('pruneViT: the hidden mask prunes every ViT channel');

  const plans: BlockPlan[] = blocks.map((b, i) => {
    const m = masks.blocks[i];
    const zFfn = checkValues(m?.ffn, b.ffnDim, `blocks[${i}].ffn`);
    let units = kept(zFfn);
    const noUnits = units.length === 0;
    if (noUnits) units = [0];
    const zHeads = checkValues(m?.heads, b.heads, `blocks[${i}].heads`);
    let heads = kept(zHeads);
    const noHeads = heads.length === 0;
    if (noHeads) heads = [0];
    return { src: b, heads, zHeads, units, zFfn, noHeads, noUnits };
  });

  const out: StateDict = new Map();
  const put = (key: string, takes: readonly Take[], edit?: (data: Float32Array, shape: number[]) => void): void => {
    const v = sd.get(key);
    if (!v) throw new MclipError(`pruneViT: the state dict has no '${key}'`);
    const r = take(v.shape, toFloat32(v), takes);
    if (edit) edit(r.data, r.shape);
    out.set(key, { dtype: 'float32', shape: r.shape, data: r.data });
  };

  for (const [key, v] of sd) {
    if (!key.startsWith(IMG) || key.endsWith('.num_batches_tracked')) {
      out.set(key, v);
      continue;
    }
    const k = key.slice(IMG.length);
    if (k === 'cls_token' || k === 'pos_embed.pos_embed.pos_embed') put(key, [{ axis: v.shape.length - 1, keep: hid, scale: z }]);
    else if (k === 'patch_emb.2.block.conv.weight' || k === 'patch_emb.2.block.conv.bias') put(key, [{ axis: 0, keep: hid, scale: z }]);
    else if (k.startsWith('patch_emb.0.') || k.startsWith('patch_emb.1.')) out.set(key, v);
    else if (k === 'post_transformer_norm.weight' || k === 'post_transformer_norm.bias') put(key, [{ axis: 0, keep: hid }]);
    else if (k === 'classifier.proj') put(key, [{ axis: 0, keep: hid }]);
    else if (k === 'classifier.bias') put(key, []); // the embedding width is never pruned
    else {
      const m = /^transformer\.(\d+)\.(.+)$/.exec(k);
      const plan = m ? plans[Number(m[1])] : undefined;
      if (!m || !plan) throw new MclipError(`pruneViT: unexpected image key '${key}'`);
      pruneTransformerLayerKey(key, m[2], plan, z, hid, put, `pruneViT: unexpected key '${key}' in a ViT block`);
    }
  }

  const sBlocks: TransformerLayerConfig[] = plans.map((p) => {
    const l: TransformerLayerConfig = { heads: p.heads.length, headDim: p.noHeads ? 1 : p.src.headDim, ffnDim: p.units.length };
    if (p.src.attention !== undefined) l.attention = p.src.attention;
    if (p.src.attentionParams !== undefined) l.attentionParams = structuredClone(p.src.attentionParams);
    return l;
  });
  const image: VitConfig = compactVit({ ...ti, embedDim: hid.length, layers: sBlocks.length, heads: sBlocks[0]?.heads ?? ti.heads, blocks: sBlocks });
  const suffix = '_pruned';
  const base: ClipConfig = { ...config, name: config.name.endsWith(suffix) ? config.name : config.name + suffix, image };
  return { stateDict: out, config: configFromStateDict(base, out, 'pruned ViT') };
}

/** A model of `config` (stem width included: `VitConfig.stemDim`) holding `sd`, a `pruneViTStateDict` result. */
export function prunedViTModel(config: ClipConfig, sd: StateDict): CLIP {
  if (config.image.kind !== 'vit') throw new MclipError(`prunedViTModel: the image tower is ${config.image.kind}, expected a ViT`);
  const model = new CLIP(config);
  try {
    loadStateDict(model, sd, 'pruned ViT');
  } catch (err) {
    model.dispose();
    throw err;
  }
  return model;
}

/**
 * `model` pruned by `masks`: its state dict (masked LayerNorms included: they keep the LayerNorm keys) cut by
 * `pruneViTStateDict`, and a new CLIP built from the inferred config (stem width kept)
 * with it loaded. The source model is left as it is (remove its masks and dispose it when done).
 */
export function pruneViT(model: CLIP, masks: ViTMaskValues): PrunedViT {
  const sd = exportStateDict(model);
  const config = configFromStateDict(model.cfg, sd, 'model');
  const r = pruneViTStateDict(sd, config, masks);
  const pruned = prunedViTModel(r.config, r.stateDict);
  pruned.train(model.training);
  return { ...r, model: pruned };
}
