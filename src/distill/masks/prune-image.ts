/**
 * From image masks to a physically smaller MCi image tower (methods.md §3.7 steps 2–3, §3.8), on
 * official-layout state dicts (unfused or fused) like manual inheritance (`inherit.ts`) and text pruning
 * (`prune-text.ts`).
 *
 * Step 2, the surviving soft values folded into the weights. The masked model's stream is z ⊙ ŝ (see
 * `image-masks.ts`), so the pruned model keeps ŝ: every writer stays as it is (layer scales, fc2, proj, the
 * PatchEmbeds and the stem are not scaled) and z goes into the input side of every reader of the stream:
 * - depthwise convs reading it (RepMixer `mixer` branches, ConvFFN `conv.conv`, RepCPE `pe`): channel c × z_c;
 * - BatchNorms reading it (RepMixer `rbr_skip`s, the attention pre-norm): γ·z and running mean μ/z (exact in
 *   eval mode);
 * - fused RepMixer / RepCPE `reparam_conv` (identity included): kernel z·W + (1 − z)·δ (δ the centre tap);
 * - grouped convs reading it with a channel multiplier (PatchEmbed `proj.0`, `conv_exp`): output o × z_⌊o/m⌋;
 * - fc1 and qkv read pruned channels only, which the masked model zeroes (indicators), so they are only cut.
 * Head and hidden masks as on the text side: `proj` columns of head h × z^head_h, `convffn.fc2` columns × z^int.
 *
 * Step 3, removal: a pruned stage channel's entry in every per-channel tensor of the stage (RepMixer convs, BNs
 * and layer scales, ConvFFN depthwise conv + BN, fc1 columns, fc2 rows and bias, RepCPE, the attention block's
 * BN, qkv columns, proj rows and bias, layer scales); the stem's channels with stage 0's; a PatchEmbed's
 * grouped-conv outputs, BNs, SE columns/rows and 1×1 block rows and columns with the stage it feeds; conv_exp's
 * outputs 2c, 2c+1 (its BNs, SE columns/rows) and `head.proj`'s rows with the last stage's channel c. A pruned
 * head: its d_h rows of q, k and v and its `proj` columns; a pruned ConvFFN unit: fc1 row and bias, fc2 column.
 * An attention block whose heads are all pruned keeps one head one channel wide with zero weights, a ConvFFN
 * with every unit pruned one zero unit (as in `prune-text.ts`); a stage whose channels are all pruned is an
 * error.
 *
 * The coupling through the PatchEmbeds (methods.md §3.8): our PatchEmbed's grouped conv has as many outputs as
 * the stage it feeds (groups = the previous width), and its 1×1 MobileOne block has an identity BN, which pairs
 * grouped-conv output j with stream channel j. So the kept channels O of stage s+1 must be grouped-conv outputs
 * whose input (channel ⌊o/m⌋ of stage s) is kept, the same number m′ ∈ {1, …, m} of them for every kept channel
 * of stage s (then the pruned conv has channel multiplier m′). With m′ = m this is the tie of methods.md §3.8
 * (both 2c and 2c+1 kept iff c is); `imageCoupling` says what a mask set breaks. Masks that break it are
 * refused here (the masked model itself takes any masks).
 *
 * SE hidden widths: a pruned SE keeps its source's hidden units (exact), so it may be wider than the default
 * the pruned widths would give; the config says so (`MciStageConfig.seWidth`, `MciConfig.convExpSeWidth`, read
 * off the shapes by `configFromStateDict`), and every loader builds it from the config alone.
 *
 * Head counts, which no shape fixes, travel in the returned config. The text tower and the logit scale are
 * passed through untouched.
 */
import { MclipError } from '../../errors.js';
import type { StateDict, TensorData } from '../../base/io/tensor-data.js';
import { toFloat32 } from '../../base/io/tensor-data.js';
import { CLIP } from '../../base/model/clip.js';
import { configFromStateDict, compactMci } from '../../base/model/config-inference.js';
import { mciStages, type ClipConfig, type MciConfig, type MciStageConfig } from '../../base/model/configs.js';
import { isFusedStateDict } from '../../base/model/checkpoint.js';
import { exportStateDict, loadStateDict } from '../../base/model/state-dict.js';
import type { ImageMaskValues } from './image-masks.js';
import { kept, maskValues, range, take, type Take } from './take.js';

export interface PrunedImageStateDict {
  /** Official-layout state dict with the smaller image tower (float32 image tensors; the text tower's, the logit scale and the BatchNorm counters shared with the input). */
  stateDict: StateDict;
  /** Its architecture (per-stage widths, heads, ConvFFN widths; `name` + '_pruned'), read back by `configFromStateDict`. */
  config: ClipConfig;
}

export interface PrunedImage extends PrunedImageStateDict {
  /** A new model of `config` with `stateDict` loaded (the source's train/eval mode). */
  model: CLIP;
}

const IMG = 'image_encoder.model.';

const checkValues = (v: Float32Array | undefined, n: number, name: string): Float32Array => maskValues('pruneImage', v, n, name);

/** How one block shrinks. */
interface BlockPlan {
  mixer: 'repmixer' | 'attention';
  heads: number[];
  zHeads: Float32Array | null;
  units: number[];
  zFfn: Float32Array;
  noHeads: boolean;
  noUnits: boolean;
}

/** How one stage shrinks. */
interface StagePlan {
  src: MciStageConfig;
  z: Float32Array;
  keep: number[];
  blocks: BlockPlan[];
}

/** The network positions of each stage, its PatchEmbed and its RepCPE (as `FastViT` lays them out). */
function positions(stages: readonly MciStageConfig[]): Map<number, { kind: 'stage' | 'down' | 'cpe'; stage: number }> {
  const out = new Map<number, { kind: 'stage' | 'down' | 'cpe'; stage: number }>();
  let n = 0;
  stages.forEach((s, i) => {
    if (s.posEmb) out.set(n++, { kind: 'cpe', stage: i });
    out.set(n++, { kind: 'stage', stage: i });
    if (i + 1 < stages.length) out.set(n++, { kind: 'down', stage: i + 1 });
  });
  return out;
}

/**
 * What a mask set's stage channels break of the PatchEmbed coupling (see the file comment): one line per
 * broken stage, empty when prunable. `widths` are the stages' widths.
 */
export function imageCoupling(channels: ReadonlyArray<Float32Array | undefined>, widths: readonly number[]): string[] {
  const out: string[] = [];
  for (let s = 1; s < widths.length; s++) {
    const zp = channels[s - 1] ?? new Float32Array(widths[s - 1]).fill(1);
    const z = channels[s] ?? new Float32Array(widths[s]).fill(1);
    const m = widths[s] / widths[s - 1];
    if (!Number.isInteger(m)) {
      out.push(`stage ${s} (${widths[s]} channels) is not a multiple of stage ${s - 1} (${widths[s - 1]})`);
      continue;
    }
    const counts = new Array<number>(widths[s - 1]).fill(0);
    const orphan = kept(z).find((o) => zp[Math.floor(o / m)] === 0);
    if (orphan !== undefined) {
      out.push(`stage ${s} keeps channel ${orphan}, which reads channel ${Math.floor(orphan / m)} of stage ${s - 1}, pruned`);
      continue;
    }
    for (const o of kept(z)) counts[Math.floor(o / m)]++;
    const per = new Set(kept(zp).map((c) => counts[c]));
    if (per.size > 1 || per.has(0)) {
      out.push(`stage ${s} keeps ${[...per].sort().join(' or ')} of the ${m} channels read from each kept channel of stage ${s - 1}; the pruned PatchEmbed needs the same number (≥ 1) for all`);
    }
  }
  return out;
}

/**
 * The smaller state dict and config for image masks `masks` on `sd` (official layout, unfused or fused) of
 * architecture `config` (e.g. `configFromStateDict` of it; its stages give the head counts).
 */
export function pruneImageStateDict(sd: StateDict, config: ClipConfig, masks: ImageMaskValues): PrunedImageStateDict {
  const ti = config.image;
  if (ti.kind !== 'mci') throw new MclipError(`pruneImage: the image tower is ${ti.kind}; image masks apply to MCi towers`);
  const stages = mciStages(ti);
  if (masks.stages.length !== stages.length) throw new MclipError(`pruneImage: ${masks.stages.length} stage entries for an MCi tower of ${stages.length} stages`);

  const plans: StagePlan[] = stages.map((st, s) => {
    const m = masks.stages[s];
    if (m.blocks.length !== st.depth) throw new MclipError(`pruneImage: stages[${s}] has ${m.blocks.length} block entries for a stage of ${st.depth} blocks (use null for an unmasked block)`);
    const z = checkValues(m.channels, st.width, `stages[${s}].channels`);
    const keep = kept(z);
    if (keep.length === 0) throw new MclipError(`pruneImage: stages[${s}].channels prunes every channel of stage ${s}`);
    const blocks = range(st.depth).map((j): BlockPlan => {
      const b = m.blocks[j];
      const name = `stages[${s}].blocks[${j}]`;
      const zFfn = checkValues(b?.ffn, st.ffnDims[j], `${name}.ffn`);
      let units = kept(zFfn);
      const noUnits = units.length === 0;
      if (noUnits) units = [0];
      if (st.mixer === 'repmixer') {
        if (b?.heads) throw new MclipError(`pruneImage: ${name}.heads: stage ${s} is a RepMixer stage, which has no heads`);
        return { mixer: 'repmixer', heads: [], zHeads: null, units, zFfn, noHeads: false, noUnits };
      }
      const nHeads = st.heads ?? st.width / (st.headDim ?? 32);
      const zHeads = checkValues(b?.heads, nHeads, `${name}.heads`);
      let heads = kept(zHeads);
      const noHeads = heads.length === 0;
      if (noHeads) heads = [0];
      return { mixer: 'attention', heads, zHeads, units, zFfn, noHeads, noUnits };
    });
    if (st.mixer === 'attention') {
      const b0 = blocks[0];
      if (blocks.some((b) => b.heads.length !== b0.heads.length || b.noHeads !== b0.noHeads)) {
        throw new MclipError(`pruneImage: stage ${s} keeps ${blocks.map((b) => (b.noHeads ? 0 : b.heads.length)).join(', ')} heads in its blocks; an MCi stage has one head count`);
      }
    }
    return { src: st, z, keep, blocks };
  });
  const broken = imageCoupling(
    plans.map((p) => p.z),
    stages.map((st) => st.width),
  );
  if (broken.length > 0) throw new MclipError(`pruneImage: the stage channel masks break the PatchEmbed coupling: ${broken.join('; ')}`);

  const out: StateDict = new Map();
  const put = (key: string, takes: readonly Take[], edit?: (data: Float32Array, shape: number[]) => void): void => {
    const v = sd.get(key);
    if (!v) throw new MclipError(`pruneImage: the state dict has no '${key}'`);
    const r = take(v.shape, toFloat32(v), takes);
    if (edit) edit(r.data, r.shape);
    out.set(key, { dtype: 'float32', shape: r.shape, data: r.data });
  };
  const at = positions(stages);
  const last = plans[plans.length - 1];
  const exp = Math.floor(last.src.width * ti.clsRatio);

  for (const [key, v] of sd) {
    if (!key.startsWith(IMG) || key.endsWith('.num_batches_tracked')) {
      out.set(key, v);
      continue;
    }
    const k = key.slice(IMG.length);
    let m = /^patch_embed\.(\d+)\.(.+)$/.exec(k);
    if (m) {
      pruneStemKey(key, Number(m[1]), m[2], plans[0].keep, put);
      continue;
    }
    m = /^network\.(\d+)\.(.+)$/.exec(k);
    if (m) {
      const where = at.get(Number(m[1]));
      if (!where) throw new MclipError(`pruneImage: unexpected image key '${key}'`);
      const p = plans[where.stage];
      if (where.kind === 'cpe') pruneStreamConvKey(key, m[2], p, v, put, 'pe');
      else if (where.kind === 'down') pruneDownsamplerKey(key, m[2], plans[where.stage - 1], p, put);
      else {
        const b = /^(\d+)\.(.+)$/.exec(m[2]);
        const bp = b ? p.blocks[Number(b[1])] : undefined;
        if (!b || !bp) throw new MclipError(`pruneImage: unexpected image key '${key}'`);
        pruneBlockKey(key, b[2], p, bp, v, put);
      }
      continue;
    }
    if (k === 'head.bias') {
      put(key, []); // the head's output (embedding) width is never pruned
      continue;
    }
    if (k.startsWith('conv_exp.') || k === 'head.proj') {
      pruneExpandKey(key, k, last, exp, put);
      continue;
    }
    throw new MclipError(`pruneImage: unexpected image key '${key}'`);
  }

  const sStages: MciStageConfig[] = plans.map((p) => {
    const s: MciStageConfig = { ...p.src, width: p.keep.length, ffnDims: p.blocks.map((b) => b.units.length) };
    if (p.src.mixer === 'attention') {
      const b0 = p.blocks[0];
      s.heads = b0.heads.length;
      s.headDim = b0.noHeads ? 1 : (p.src.headDim ?? 32);
    }
    return s;
  });
  const image: MciConfig = compactMci({ ...ti, layers: sStages.map((s) => s.depth), embedDims: sStages.map((s) => s.width), stages: sStages });
  const suffix = '_pruned';
  const base: ClipConfig = { ...config, name: config.name.endsWith(suffix) ? config.name : config.name + suffix, image };
  return { stateDict: out, config: configFromStateDict(base, out, 'pruned image tower') };
}

type Put = (key: string, takes: readonly Take[], edit?: (data: Float32Array, shape: number[]) => void) => void;

/** The stem: every tensor's output channels are stage 0's; the dense 1×1 `patch_embed.2` also its inputs. */
function pruneStemKey(key: string, index: number, rest: string, keep: number[], put: Put): void {
  const dense = index === 2 && /(^|\.)conv\.weight$|^reparam_conv\.weight$/.test(rest);
  put(key, dense ? [{ axis: 0, keep }, { axis: 1, keep }] : [{ axis: 0, keep }]);
}

/** z·W + (1 − z)·δ on a depthwise kernel [C′, 1, kh, kw] of the kept channels (the identity's share of a fused update). */
function identityShare(keep: number[], z: Float32Array, v: TensorData, key: string): (data: Float32Array) => void {
  const [, mult, kh, kw] = v.shape;
  if (v.shape.length !== 4 || mult !== 1) throw new MclipError(`pruneImage: '${key}' has shape [${v.shape}], expected [C, 1, kh, kw]`);
  const centre = Math.floor(kh / 2) * kw + Math.floor(kw / 2);
  return (data) => {
    keep.forEach((c, j) => {
      data[j * kh * kw + centre] += 1 - z[c];
    });
  };
}

/**
 * A per-channel module on the stream (`rest` relative to it): a depthwise conv reading the stream (× z), or
 * the fused conv with the identity in it (z·W + (1 − z)·δ); its bias and anything else just cut.
 */
function pruneStreamConvKey(key: string, rest: string, p: StagePlan, v: TensorData, put: Put, conv: string): void {
  const { keep, z } = p;
  if (rest === `${conv}.weight`) return put(key, [{ axis: 0, keep, scale: z }]);
  if (rest === 'reparam_conv.weight') return put(key, [{ axis: 0, keep, scale: z }], identityShare(keep, z, v, key));
  if (v.shape[0] !== z.length) throw new MclipError(`pruneImage: '${key}' has shape [${v.shape}], expected ${z.length} channels first`);
  return put(key, [{ axis: 0, keep }]);
}

/** A BatchNorm reading z ⊙ x: γ·z and μ/z on the kept channels. */
function pruneStreamBn(key: string, field: string, p: StagePlan, put: Put): void {
  const { keep, z } = p;
  if (field === 'weight') return put(key, [{ axis: 0, keep, scale: z }]);
  if (field === 'running_mean') return put(key, [{ axis: 0, keep, scale: Float32Array.from(z, (x) => (x === 0 ? 0 : 1 / x)) }]);
  return put(key, [{ axis: 0, keep }]);
}

function pruneBlockKey(key: string, rest: string, p: StagePlan, b: BlockPlan, v: TensorData, put: Put): void {
  const { keep, z } = p;
  const noUnitsEdit = b.noUnits ? (data: Float32Array) => data.fill(0) : undefined;
  switch (rest) {
    case 'layer_scale':
    case 'layer_scale_1':
    case 'layer_scale_2':
    case 'token_mixer.layer_scale':
    case 'token_mixer.reparam_conv.bias':
    case 'token_mixer.proj.bias':
    case 'convffn.fc2.bias':
      return put(key, [{ axis: 0, keep }]);
    case 'token_mixer.reparam_conv.weight':
      return put(key, [{ axis: 0, keep, scale: z }], identityShare(keep, z, v, key));
    case 'convffn.conv.conv.weight':
      return put(key, [{ axis: 0, keep, scale: z }]);
    case 'convffn.fc1.weight':
      return put(key, [{ axis: 0, keep: b.units }, { axis: 1, keep }], noUnitsEdit);
    case 'convffn.fc1.bias':
      return put(key, [{ axis: 0, keep: b.units }], noUnitsEdit);
    case 'convffn.fc2.weight':
      return put(key, [{ axis: 0, keep }, { axis: 1, keep: b.units, scale: b.zFfn }]);
    case 'token_mixer.qkv.weight':
    case 'token_mixer.proj.weight':
      return pruneAttentionKey(key, rest, p, b, put);
    // QK-norm (sigmoid-attention stabiliser): LayerNorms over one head's width, which pruning heads keeps
    case 'token_mixer.q_norm.weight':
    case 'token_mixer.q_norm.bias':
    case 'token_mixer.k_norm.weight':
    case 'token_mixer.k_norm.bias':
      return put(key, []);
    // hybrid-norm: a LayerNorm over the stage's channels; exact only while they are all kept
    case 'attn_out_norm.weight':
    case 'attn_out_norm.bias':
      if (p.keep.length !== p.z.length) throw new MclipError(`pruneImage: '${key}': a hybrid-norm LayerNorm over the stage channels cannot follow a stage channel mask (mask heads and ConvFFN units only: leave --image-channels off)`);
      return put(key, [{ axis: 0, keep }]);
    default:
      break;
  }
  let m = /^(?:token_mixer\.(?:mixer|norm)\.rbr_skip|norm)\.(weight|bias|running_mean|running_var)$/.exec(rest);
  if (m) return pruneStreamBn(key, m[1], p, put);
  if (/^token_mixer\.mixer\.rbr_(conv\.\d+|scale)\.conv\.weight$/.test(rest)) return put(key, [{ axis: 0, keep, scale: z }]);
  m = /^(token_mixer\.mixer\.rbr_(conv\.\d+|scale)|convffn\.conv)\.bn\./.exec(rest);
  if (m) return put(key, [{ axis: 0, keep }]);
  throw new MclipError(`pruneImage: unexpected key '${key}' in an MCi ${b.mixer === 'attention' ? 'attention' : 'RepMixer'} block`);
}

function pruneAttentionKey(key: string, rest: string, p: StagePlan, b: BlockPlan, put: Put): void {
  if (!b.zHeads || p.src.mixer !== 'attention') throw new Error('internal: not an attention block');
  const dh = p.src.headDim ?? 32;
  const nHeads = b.zHeads.length;
  const inner = nHeads * dh;
  const width = b.noHeads ? 1 : dh;
  const innerKeep = b.heads.flatMap((h) => range(width).map((c) => h * dh + c));
  const zHeads = b.zHeads;
  const zInner = Float32Array.from(range(inner), (c) => zHeads[Math.floor(c / dh)]);
  if (rest === 'token_mixer.qkv.weight') {
    const rows = [0, 1, 2].flatMap((q) => innerKeep.map((c) => q * inner + c));
    return put(key, [{ axis: 0, keep: rows }, { axis: 1, keep: p.keep }], b.noHeads ? (d) => d.fill(0) : undefined);
  }
  return put(key, [{ axis: 0, keep: p.keep }, { axis: 1, keep: innerKeep, scale: zInner }]);
}

/** Kept outputs of a grouped conv with channel multiplier m reading `from`'s stream, and the input's z per output. */
function children(from: StagePlan, m: number): { keep: number[]; zUp: Float32Array } {
  return { keep: from.keep.flatMap((c) => range(m).map((r) => c * m + r)), zUp: Float32Array.from({ length: from.z.length * m }, (_, o) => from.z[Math.floor(o / m)]) };
}

/** The PatchEmbed from `prev` into `p`: grouped-conv rows O (× z of their input), SE, and the 1×1 block on O. */
function pruneDownsamplerKey(key: string, rest: string, prev: StagePlan, p: StagePlan, put: Put): void {
  const o = p.keep;
  const m = p.z.length / prev.z.length;
  const zUp = Float32Array.from(p.z, (_, j) => prev.z[Math.floor(j / m)]);
  if (/^proj\.0\.(lkb_origin\.conv\.weight|small_conv\.conv\.weight|lkb_reparam\.weight)$/.test(rest)) return put(key, [{ axis: 0, keep: o, scale: zUp }]);
  if (/^proj\.0\.(lkb_origin\.bn\.|small_conv\.bn\.|lkb_reparam\.bias$)/.test(rest)) return put(key, [{ axis: 0, keep: o }]);
  if (rest === 'proj.0.se.fc1.weight') return put(key, [{ axis: 1, keep: o }]);
  if (rest === 'proj.0.se.fc1.bias') return put(key, []);
  if (rest === 'proj.0.se.fc2.weight' || rest === 'proj.0.se.fc2.bias') return put(key, [{ axis: 0, keep: o }]);
  if (/^proj\.1\.(rbr_conv\.\d+\.conv\.weight|reparam_conv\.weight)$/.test(rest)) return put(key, [{ axis: 0, keep: o }, { axis: 1, keep: o }]);
  if (/^proj\.1\./.test(rest)) return put(key, [{ axis: 0, keep: o }]);
  throw new MclipError(`pruneImage: unexpected key '${key}' in an MCi PatchEmbed`);
}

/** conv_exp (outputs 2c, 2c+1 with the last stage's channel c, × z_c), its SE, and the head's rows. */
function pruneExpandKey(key: string, k: string, last: StagePlan, exp: number, put: Put): void {
  const m = exp / last.z.length;
  if (!Number.isInteger(m)) throw new MclipError(`pruneImage: conv_exp has ${exp} outputs for a last stage of ${last.z.length} channels`);
  const { keep, zUp } = children(last, m);
  if (k === 'head.proj') return put(key, [{ axis: 0, keep }]);
  const rest = k.slice('conv_exp.'.length);
  if (/^(rbr_conv\.\d+\.conv|rbr_scale\.conv|reparam_conv)\.weight$/.test(rest)) return put(key, [{ axis: 0, keep, scale: zUp }]);
  if (/^(rbr_conv\.\d+|rbr_scale)\.bn\.|^reparam_conv\.bias$/.test(rest)) return put(key, [{ axis: 0, keep }]);
  if (rest === 'se.reduce.weight') return put(key, [{ axis: 1, keep }]);
  if (rest === 'se.reduce.bias') return put(key, []);
  if (rest === 'se.expand.weight' || rest === 'se.expand.bias') return put(key, [{ axis: 0, keep }]);
  throw new MclipError(`pruneImage: unexpected key '${key}' in conv_exp`);
}

/** A model of `config` (SE widths included: `seWidth`, `convExpSeWidth`) holding `sd`, a `pruneImageStateDict` result. */
export function prunedImageModel(config: ClipConfig, sd: StateDict, opts: { inferenceMode?: boolean } = {}): CLIP {
  const model = new CLIP(config, { inferenceMode: opts.inferenceMode ?? isFusedStateDict(sd) });
  try {
    loadStateDict(model, sd, 'pruned image tower');
  } catch (e) {
    model.dispose();
    throw e;
  }
  return model;
}

/**
 * `model` pruned by `masks`: its state dict cut by `pruneImageStateDict`, and a new CLIP built from the inferred
 * config (SE widths kept, see the file comment) with it loaded. The source model is left as it is (remove its
 * masks and dispose it when done).
 */
export function pruneImage(model: CLIP, masks: ImageMaskValues): PrunedImage {
  const sd = exportStateDict(model);
  const config = configFromStateDict(model.cfg, sd, 'model');
  const r = pruneImageStateDict(sd, config, masks);
  const pruned = prunedImageModel(r.config, r.stateDict);
  pruned.train(model.training);
  return { ...r, model: pruned };
}
