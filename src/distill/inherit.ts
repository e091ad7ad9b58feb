/**
 * TinyCLIP manual weight inheritance (methods.md §3.2) on official-layout state dicts, so a teacher may be
 * fused or unfused, ours or an official `.pt`.
 *
 * Depth: layers are picked at a fixed stride, `step = ⌊L_teacher / L_student⌋`, indices `0, step, 2·step, …`:
 * the text transformer encoders (the `mct` RepMixer blocks before and after them always stay), the blocks of
 * each MCi stage, the ViT layers.
 *
 * Width: prefix slicing, no importance ranking. Every tensor keeps its first entries along every shrunk axis
 * (embeddings, LayerNorm/BatchNorm weights and running statistics, convs, layer scales, SE reduce/expand,
 * the projections' rows); `num_batches_tracked` is copied. qkv weights and biases (text/ViT `qkv_proj`, MCi
 * `qkv`) are viewed as `[3, heads·d_h, in]` and keep the first heads whole and the first input channels;
 * `out_proj`/`proj` keep the matching input columns. Depthwise convs with channel multiplier 2 (PatchEmbed,
 * conv_exp: output o reads input ⌊o/2⌋) keep their first 2·C' outputs, which is again a prefix. SE widths
 * follow their formulas (⌊C/16⌋, make_divisible(C/4, 8)) through the student's own shapes.
 *
 * FFN widths: `textFfn` sets every student transformer layer's FFN; `imageFfnRatio` every MCi ConvFFN as
 * ⌊C'·ratio⌋. Without them an FFN keeps the teacher's FFN/width ratio (F·C'/C, rounded), so shrinking the
 * width shrinks the FFN in proportion (TinyCLIP's students keep the MLP ratio); the `mct` RepMixer ConvFFNs
 * always follow the text width this way.
 *
 * Heads: widths are cut in whole heads of the teacher's head width; an attention layer whose inner width
 * equals the residual width keeps inner = the new width (heads = C' / d_h).
 *
 * Every student key and shape comes from the student model itself (`expectedShapes` of
 * `new CLIP(student, { inferenceMode: teacherFused })`), so nothing can be left out.
 */
import { isDeepStrictEqual } from 'node:util';
import { MclipError } from '../errors.js';
import type { StateDict, TensorArray, TensorData } from '../base/io/tensor-data.js';
import { CLIP } from '../base/model/clip.js';
import { configFromStateDict, compactMci, compactText, compactVit } from '../base/model/config-inference.js';
import { mciStages, textLayers, vitBlocks, type ClipConfig, type MciStageConfig, type TextLayerConfig, type TransformerLayerConfig } from '../base/model/configs.js';
import { isFusedStateDict } from '../base/model/checkpoint.js';
import { expectedShapes, stripPrefix } from '../base/model/state-dict.js';

/** The student's sizes; anything left out keeps the teacher's. */
export interface InheritSpec {
  /** Text transformer encoders (the `mct` RepMixer blocks stay as well). */
  textLayers?: number;
  /** Text residual width. */
  textWidth?: number;
  /** Heads of every text transformer layer (head width stays the teacher's: textWidth = heads · d_h). */
  textHeads?: number;
  /** FFN width of every text transformer layer. */
  textFfn?: number;
  /** Blocks per MCi stage (one entry per stage). */
  imageDepths?: number[];
  /** Width per MCi stage (one entry per stage). */
  imageWidths?: number[];
  /** MCi ConvFFN width = ⌊width · ratio⌋ in every block. */
  imageFfnRatio?: number;
  /** ViT layers. */
  vitLayers?: number;
}

/** The command-line flag of each spec field (errors name the flag). */
export const INHERIT_FLAGS: Readonly<Record<keyof InheritSpec, string>> = {
  textLayers: '--text-layers',
  textWidth: '--text-width',
  textHeads: '--text-heads',
  textFfn: '--text-ffn',
  imageDepths: '--image-depths',
  imageWidths: '--image-widths',
  imageFfnRatio: '--image-ffn-ratio',
  vitLayers: '--vit-layers',
};

export interface InheritPlan {
  /** The student's config (scalar shorthand where it describes it exactly). */
  config: ClipConfig;
  /** Student text layer i comes from teacher text layer `textMap[i]` (indices of `text_encoder.transformer`). */
  textMap: number[];
  /** MCi: student block j of stage s comes from teacher block `imageMap[s][j]`; ViT: `imageMap[0]` maps layers. */
  imageMap: number[][];
}

export interface InheritResult extends InheritPlan {
  /** The student's state dict (official layout; the teacher's dtypes; fused iff the teacher is). */
  stateDict: StateDict;
  /** The teacher's config, as read off its shapes. */
  teacherConfig: ClipConfig;
  /** The teacher (hence the student) is in fused (reparameterised) form. */
  fused: boolean;
}

function fail(flag: keyof InheritSpec, msg: string): never {
  throw new MclipError(`${INHERIT_FLAGS[flag]} ${msg}`);
}

function positiveInt(flag: keyof InheritSpec, v: number, what = ''): number {
  if (!Number.isInteger(v) || v < 1) fail(flag, `${what}must be a positive integer, got ${v}`);
  return v;
}

/** Indices 0, step, 2·step, … (L_student of them), step = ⌊L_teacher / L_student⌋. */
export function strideIndices(teacher: number, student: number): number[] {
  const step = Math.floor(teacher / student);
  return Array.from({ length: student }, (_, i) => i * step);
}

function scaled(f: number, to: number, from: number): number {
  return to === from ? f : Math.max(1, Math.round((f * to) / from));
}

/** The student config and which teacher layer each student layer comes from. */
export function planInheritance(teacher: ClipConfig, spec: InheritSpec): InheritPlan {
  // ---- text
  const tt = teacher.text;
  const tLayers = textLayers(tt);
  const attnIdx = tLayers.flatMap((l, i) => (l.mixer === 'attention' ? [i] : []));
  const nText = spec.textLayers === undefined ? attnIdx.length : positiveInt('textLayers', spec.textLayers);
  if (nText > attnIdx.length) fail('textLayers', `${nText}: the teacher has ${attnIdx.length} text transformer layers`);
  const keptAttn = new Set(strideIndices(attnIdx.length, nText).map((k) => attnIdx[k]));
  const dim = spec.textWidth === undefined ? tt.dim : positiveInt('textWidth', spec.textWidth);
  if (dim > tt.dim) fail('textWidth', `${dim} is above the teacher's text width ${tt.dim}`);
  if (spec.textHeads !== undefined) positiveInt('textHeads', spec.textHeads);
  if (spec.textFfn !== undefined) positiveInt('textFfn', spec.textFfn);
  const textMap: number[] = [];
  const sLayers: TextLayerConfig[] = [];
  tLayers.forEach((l, i) => {
    if (l.mixer === 'repmixer') {
      sLayers.push({ mixer: 'repmixer', ffnDim: scaled(l.ffnDim, dim, tt.dim) });
      textMap.push(i);
      return;
    }
    if (!keptAttn.has(i)) return;
    const inner = l.heads * l.headDim;
    let heads = l.heads;
    if (spec.textHeads !== undefined) {
      heads = spec.textHeads;
      if (dim % heads !== 0) fail('textHeads', `${heads} does not divide the text width ${dim}`);
      if (dim / heads !== l.headDim) fail('textHeads', `${heads}: heads of ${dim}/${heads} = ${dim / heads} channels, but the teacher's are ${l.headDim} wide (heads are kept whole)`);
      if (heads > l.heads) fail('textHeads', `${heads} is above the teacher's ${l.heads} heads`);
    } else if (dim !== tt.dim && inner === tt.dim) {
      if (dim % l.headDim !== 0) fail('textWidth', `${dim} is not a multiple of the teacher's head width ${l.headDim} (heads are kept whole)`);
      heads = dim / l.headDim;
    }
    const ffnDim = spec.textFfn ?? scaled(l.ffnDim, dim, tt.dim);
    if (ffnDim > l.ffnDim) fail('textFfn', `${ffnDim} is above the teacher's FFN width ${l.ffnDim} (text layer ${i})`);
    const layer: TextLayerConfig = { mixer: 'attention', heads, headDim: l.headDim, ffnDim };
    if (l.attention !== undefined) layer.attention = l.attention;
    if (l.attentionParams !== undefined) layer.attentionParams = structuredClone(l.attentionParams);
    sLayers.push(layer);
    textMap.push(i);
  });
  const firstAttn = sLayers.find((l) => l.mixer === 'attention');
  const text = compactText({
    ...tt,
    dim,
    nTransformerLayers: nText,
    nHeads: firstAttn?.mixer === 'attention' ? firstAttn.heads : tt.nHeads,
    ffnMultiplier: firstAttn ? firstAttn.ffnDim / dim : tt.ffnMultiplier,
    layers: sLayers,
  });

  // ---- image
  const ti = teacher.image;
  let image: ClipConfig['image'];
  let imageMap: number[][];
  if (ti.kind === 'vit') {
    for (const f of ['imageDepths', 'imageWidths', 'imageFfnRatio'] as const) {
      if (spec[f] !== undefined) fail(f, `applies to MCi image towers; the teacher's is a ViT (use ${INHERIT_FLAGS.vitLayers})`);
    }
    const blocks = vitBlocks(ti);
    const n = spec.vitLayers === undefined ? blocks.length : positiveInt('vitLayers', spec.vitLayers);
    if (n > blocks.length) fail('vitLayers', `${n}: the teacher has ${blocks.length} ViT layers`);
    const picks = strideIndices(blocks.length, n);
    const sBlocks: TransformerLayerConfig[] = picks.map((p) => ({ ...blocks[p] }));
    image = compactVit({ ...ti, layers: n, heads: sBlocks[0]?.heads ?? ti.heads, blocks: sBlocks });
    imageMap = [picks];
  } else {
    if (spec.vitLayers !== undefined) fail('vitLayers', `applies to ViT image towers; the teacher's is MCi (use ${INHERIT_FLAGS.imageDepths})`);
    const stages = mciStages(ti);
    const list = (flag: 'imageDepths' | 'imageWidths', v: number[] | undefined, own: number[]): number[] => {
      if (v === undefined) return own;
      if (v.length !== own.length) fail(flag, `has ${v.length} entries; the teacher has ${own.length} MCi stages`);
      return v.map((x, i) => {
        positiveInt(flag, x, `entry ${i + 1} `);
        if (x > own[i]) fail(flag, `entry ${i + 1} (${x}) is above the teacher's ${own[i]} (stage ${i + 1})`);
        return x;
      });
    };
    const depths = list('imageDepths', spec.imageDepths, stages.map((s) => s.depth));
    const widths = list('imageWidths', spec.imageWidths, stages.map((s) => s.width));
    const ratio = spec.imageFfnRatio;
    if (ratio !== undefined && !(Number.isFinite(ratio) && ratio > 0)) fail('imageFfnRatio', `must be a positive number, got ${ratio}`);
    for (let i = 1; i < stages.length; i++) {
      const m = stages[i].width / stages[i - 1].width;
      if (widths[i] !== widths[i - 1] * m) {
        fail('imageWidths', `entry ${i + 1} must be ${m} × entry ${i} = ${widths[i - 1] * m}, got ${widths[i]}: the downsampler into stage ${i + 1} is a depthwise conv with channel multiplier ${m}`);
      }
    }
    imageMap = [];
    const sStages: MciStageConfig[] = stages.map((st, i) => {
      const picks = strideIndices(st.depth, depths[i]);
      imageMap.push(picks);
      const w = widths[i];
      const ffnDims = picks.map((p, j) => {
        const f = ratio === undefined ? scaled(st.ffnDims[p], w, st.width) : Math.floor(w * ratio);
        if (f < 1) fail('imageFfnRatio', `${ratio} gives a ConvFFN of width ${f} in stage ${i + 1}`);
        if (f > st.ffnDims[p]) fail(ratio === undefined ? 'imageWidths' : 'imageFfnRatio', `gives stage ${i + 1} block ${j + 1} a ConvFFN of ${f}, above the teacher's ${st.ffnDims[p]}`);
        return f;
      });
      const s: MciStageConfig = { ...st, depth: depths[i], width: w, ffnDims };
      if (st.mixer === 'attention' && st.heads !== undefined && st.headDim !== undefined && w !== st.width && st.heads * st.headDim === st.width) {
        if (w % st.headDim !== 0) fail('imageWidths', `entry ${i + 1} (${w}) is not a multiple of the teacher's head width ${st.headDim} (heads are kept whole)`);
        s.heads = w / st.headDim;
      }
      return s;
    });
    image = compactMci({ ...ti, layers: depths, embedDims: widths, stages: sStages });
  }
  // A student that differs from its teacher is named after it.
  const suffix = '_inherited';
  const imageChanged = !isDeepStrictEqual(image, ti);
  if (imageChanged && !image.name.endsWith(suffix)) image = { ...image, name: image.name + suffix };
  const changed = imageChanged || !isDeepStrictEqual(text, tt);
  const name = changed && !teacher.name.endsWith(suffix) ? teacher.name + suffix : teacher.name;
  return { config: { ...teacher, name, image, text }, textMap, imageMap };
}

/** The network positions of the MCi stages (RepCPE and PatchEmbed modules sit between them). */
function stagePositions(stages: MciStageConfig[]): Map<number, number> {
  const out = new Map<number, number>();
  let n = 0;
  stages.forEach((s, i) => {
    if (s.posEmb) n++;
    out.set(n++, i);
    if (i + 1 < stages.length) n++;
  });
  return out;
}

/** The teacher key a student key is read from (layer and block indices mapped). */
function teacherKey(key: string, plan: InheritPlan, stagesAt: Map<number, number> | null): string {
  let m = /^text_encoder\.transformer\.(\d+)\.(.*)$/.exec(key);
  if (m) return `text_encoder.transformer.${plan.textMap[Number(m[1])]}.${m[2]}`;
  if (stagesAt) {
    m = /^image_encoder\.model\.network\.(\d+)\.(\d+)\.(.*)$/.exec(key);
    const s = m ? stagesAt.get(Number(m[1])) : undefined;
    if (m && s !== undefined) return `image_encoder.model.network.${m[1]}.${plan.imageMap[s][Number(m[2])]}.${m[3]}`;
  } else {
    m = /^image_encoder\.model\.transformer\.(\d+)\.(.*)$/.exec(key);
    if (m) return `image_encoder.model.transformer.${plan.imageMap[0][Number(m[1])]}.${m[2]}`;
  }
  return key;
}

const QKV = /\.(qkv|qkv_proj)\.(weight|bias)$/;

interface CopyArray<A> {
  subarray(begin: number, end: number): A;
  set(src: A, offset: number): void;
}

/** Copies the prefix block `to` of a row-major array of shape `from` (same rank, to[k] ≤ from[k]). */
function copyPrefix<A extends CopyArray<A>>(src: A, out: A, from: readonly number[], to: readonly number[]): A {
  const r = to.length;
  if (r === 0) {
    out.set(src.subarray(0, 1), 0);
    return out;
  }
  const strides = new Array<number>(r).fill(1);
  for (let k = r - 2; k >= 0; k--) strides[k] = strides[k + 1] * from[k + 1];
  const last = to[r - 1];
  const rows = to.slice(0, -1).reduce((a, b) => a * b, 1);
  const idx = new Array<number>(r - 1).fill(0);
  for (let row = 0; row < rows; row++) {
    let off = 0;
    for (let k = 0; k < r - 1; k++) off += idx[k] * strides[k];
    out.set(src.subarray(off, off + last), row * last);
    for (let k = r - 2; k >= 0; k--) {
      if (++idx[k] < to[k]) break;
      idx[k] = 0;
    }
  }
  return out;
}

function prefixData(d: TensorArray, n: number, from: readonly number[], to: readonly number[]): TensorArray {
  if (d instanceof Float32Array) return copyPrefix(d, new Float32Array(n), from, to);
  if (d instanceof Uint16Array) return copyPrefix(d, new Uint16Array(n), from, to);
  if (d instanceof Float64Array) return copyPrefix(d, new Float64Array(n), from, to);
  if (d instanceof BigInt64Array) return copyPrefix(d, new BigInt64Array(n), from, to);
  if (d instanceof Int32Array) return copyPrefix(d, new Int32Array(n), from, to);
  if (d instanceof Int16Array) return copyPrefix(d, new Int16Array(n), from, to);
  if (d instanceof Int8Array) return copyPrefix(d, new Int8Array(n), from, to);
  return copyPrefix(d, new Uint8Array(n), from, to);
}

/** The first `shape` entries of `t` along every axis (qkv tensors viewed as [3, inner, …]). */
export function slicePrefix(t: TensorData, shape: readonly number[], key: string, source: string): TensorData {
  let from = t.shape;
  let to = [...shape];
  if (QKV.test(key) && from.length >= 1 && from[0] % 3 === 0 && to[0] % 3 === 0) {
    from = [3, from[0] / 3, ...from.slice(1)];
    to = [3, to[0] / 3, ...to.slice(1)];
  }
  if (from.length !== to.length || to.some((d, k) => d > from[k])) {
    throw new MclipError(`${source}: cannot inherit '${key}': the student's [${shape.join(', ')}] does not fit inside the teacher's [${t.shape.join(', ')}]`);
  }
  const n = to.reduce((a, b) => a * b, 1);
  if (to.every((d, k) => d === from[k])) return { dtype: t.dtype, shape: [...shape], data: t.data.slice() };
  return { dtype: t.dtype, shape: [...shape], data: prefixData(t.data, n, from, to) };
}

/**
 * Builds the student state dict: every key of the student model (fused iff `fused`) read from the teacher
 * through `plan`'s layer maps and prefix-sliced to the student's shape.
 */
export function inheritStateDict(teacher: StateDict, plan: InheritPlan, fused: boolean, source = 'teacher'): StateDict {
  const student = new CLIP(plan.config, { inferenceMode: fused });
  let shapes: Map<string, number[]>;
  try {
    shapes = expectedShapes(student);
  } finally {
    student.dispose();
  }
  const stagesAt = plan.config.image.kind === 'mci' ? stagePositions(mciStages(plan.config.image)) : null;
  const out: StateDict = new Map();
  for (const [key, shape] of shapes) {
    const tk = teacherKey(key, plan, stagesAt);
    const t = teacher.get(tk);
    if (!t) throw new MclipError(`${source}: the teacher has no '${tk}' (needed for the student's '${key}')`);
    out.set(key, slicePrefix(t, shape, key, source));
  }
  return out;
}

/**
 * Manual weight inheritance: the teacher's architecture is read off its state dict (`teacherConfig`, e.g. a
 * stored config, supplies heads and what else shapes do not tell), the student planned from `spec`, and its
 * state dict cut out of the teacher's.
 */
export function inheritWeights(teacher: StateDict, spec: InheritSpec, opts: { teacherConfig?: ClipConfig | null; source?: string } = {}): InheritResult {
  const source = opts.source ?? 'teacher';
  const sd = stripPrefix(teacher, 'module.');
  const teacherConfig = configFromStateDict(opts.teacherConfig ?? null, sd, source);
  const fused = isFusedStateDict(sd);
  const plan = planInheritance(teacherConfig, spec);
  return { ...plan, stateDict: inheritStateDict(sd, plan, fused, source), teacherConfig, fused };
}

export interface TowerParams {
  image: number;
  text: number;
  /** Everything (image + text + logit scale). */
  total: number;
}

/**
 * Trainable parameters per tower of an official-layout state dict: every tensor except the BatchNorm
 * buffers (`running_mean`, `running_var`, `num_batches_tracked`), the same count as `countParams` of the
 * model it loads into.
 */
export function stateDictParams(sd: StateDict): TowerParams {
  const out: TowerParams = { image: 0, text: 0, total: 0 };
  for (const [k, t] of sd) {
    if (/\.(running_mean|running_var|num_batches_tracked)$/.test(k)) continue;
    const n = t.shape.reduce((a, b) => a * b, 1);
    out.total += n;
    if (k.startsWith('image_encoder.')) out.image += n;
    else if (k.startsWith('text_encoder.')) out.text += n;
  }
  return out;
}
