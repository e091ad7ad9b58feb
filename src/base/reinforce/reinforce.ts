/**
 * Dataset reinforcement (methods.md §2.3–2.4): image–text shards (sample.ts) → DataCompDR-style
 * shards (datacompdr.ts) holding, per sample, `n_aug` augmentation records and every teacher's
 * normalised embeddings of the augmented images and of the real + synthetic captions.
 *
 * - Augmentations: `n_aug` records per sample from `sampleAugParams` with a mulberry32 RNG seeded
 *   by `sampleSeed(seed, key)` (FNV-1a of `<seed>:<key>`), so a rerun (or a resumed run) gives the
 *   same records. Each record is replayed with `applyAug` at each teacher's image size; each
 *   checkpoint teacher normalises the replayed pixels with its own spec (`Teacher.preprocess`).
 * - `image_emb [n_aug, ΣD_k]`: teacher slices concatenated in teacher order, each L2-normalised.
 * - `text_emb [1 + n_syn, ΣD_k]`: row 0 = the real caption, rows 1.. = the first `syn` of the
 *   sample's alternative captions (`captions`), which become `syn_text`.
 * - The original PNG, caption, labels (`json.labels`) and source (`json.source`) are kept.
 * - Resumable: one output shard per input shard, same basename; an existing output shard is
 *   complete (ShardWriter writes `.name.tmp-…` and renames at the end) and is skipped. Stale
 *   temporaries of an interrupted run are removed. `reinforce.json` records the settings; a rerun
 *   with different teachers/augs/seed/syn into the same folder is refused.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { MclipError } from '../../errors.js';
import { applyAug, mulberry32, sampleAugParams, type AugParams, type RgbImage } from '../data/augment.js';
import { atomicWriteJson } from '../data/build.js';
import { encodeDrSample, type DrSample, type TeacherInfo } from '../data/datacompdr.js';
import { readImageTextDataset, type ImageTextSample } from '../data/sample.js';
import { listShards, ShardWriter } from '../data/shards.js';
import { decodeImage } from '../preprocess/index.js';
import { isIdentityNormalisation } from '../preprocess/spec.js';
import type { ClipTokenizer } from '../tokenizer/index.js';
import type { Teacher } from './teachers.js';

export const REINFORCE_FORMAT = 'mclip-reinforce-v1';

export interface ReinforceOptions {
  /** shard folder (or list of shard files) of image–text samples */
  input: string | readonly string[];
  out: string;
  teachers: readonly Teacher[];
  tokenizer: ClipTokenizer;
  /** augmentations per sample (n_aug) */
  augs: number;
  seed?: number;
  /** max synthetic captions per sample (default 5) */
  syn?: number;
  /** images per teacher forward (default 32) */
  batch?: number;
  /** extra provenance stored in reinforce.json */
  source?: Record<string, unknown>;
  /** per-shard events (logging / progress) */
  onShard?: (e: ShardEvent) => void;
  /** per-sample progress */
  onSample?: () => void;
}

export interface ShardEvent {
  input: string;
  output: string;
  index: number;
  total: number;
  status: 'skipped' | 'written';
  samples: number;
  /** input samples dropped as unreadable */
  bad: number;
  seconds: number;
}

export interface ReinforceSummary {
  shards: number;
  written: number;
  skipped: number;
  samples: number;
  bad: number;
}

/** FNV-1a (32-bit) of `<seed>:<key>`: the seed of a sample's augmentation RNG. */
export function sampleSeed(seed: number, key: string): number {
  let h = 0x811c9dc5;
  const s = `${seed}:${key}`;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** The `n` augmentation records of a sample (deterministic in seed and key). */
export function sampleAugs(seed: number, key: string, width: number, height: number, n: number, size: number): AugParams[] {
  const rng = mulberry32(sampleSeed(seed, key));
  return Array.from({ length: n }, () => sampleAugParams(rng, width, height, { size }));
}

interface Settings {
  format: string;
  teachers: { name: string; dim: number; logit_scale: number; image_size: number; mean?: number[]; std?: number[] }[];
  augs: number;
  seed: number;
  syn: number;
}

function checkSettings(out: string, s: Settings, source: Record<string, unknown>): void {
  const path = join(out, 'reinforce.json');
  if (existsSync(path)) {
    let old: Partial<Settings>;
    try {
      old = JSON.parse(readFileSync(path, 'utf8')) as Partial<Settings>;
    } catch {
      throw new MclipError(`${path}: not valid JSON (remove it or choose another --out)`);
    }
    const pick = (x: Partial<Settings>): string => JSON.stringify({ format: x.format, teachers: x.teachers, augs: x.augs, seed: x.seed, syn: x.syn });
    if (pick(old) !== pick(s)) throw new MclipError(`${out}: holds shards made with other settings (${pick(old)}); now ${pick(s)} — use another --out`);
    return;
  }
  atomicWriteJson(path, { ...s, source });
}

/** An empty tar (two zero blocks), written atomically: an input shard without usable samples. */
function writeEmptyShard(path: string): void {
  const tmp = join(path, '..', `.${basename(path)}.tmp-${process.pid}-empty`);
  writeFileSync(tmp, new Uint8Array(1024));
  renameSync(tmp, path);
}

function removeStaleTemps(out: string, name: string): void {
  for (const f of readdirSync(out)) if (f.startsWith(`.${name}.tmp-`)) rmSync(join(out, f), { force: true });
}

interface Pending {
  sample: ImageTextSample;
  syn: string[];
  augs: AugParams[];
  /** per teacher: the augmented images at its size */
  views: RgbImage[][];
}

/** Embeds a group of samples with every teacher and encodes them. */
async function embedGroup(group: Pending[], o: ReinforceOptions, infos: TeacherInfo[], embDim: number): Promise<DrSample[]> {
  const nAug = o.augs;
  const out: DrSample[] = group.map((p) => ({
    key: p.sample.key,
    meta: { labels: p.sample.labels, ...(p.sample.source ? { source: p.sample.source } : {}) },
    synText: p.syn,
    paramAug: p.augs,
    imageEmb: new Float32Array(nAug * embDim),
    textEmb: new Float32Array((1 + p.syn.length) * embDim),
    embDim,
    teachers: infos,
    image: { format: 'png', bytes: p.sample.image },
    caption: p.sample.caption,
  }));
  const texts = group.flatMap((p) => [p.sample.caption, ...p.syn]);
  let off = 0;
  for (let k = 0; k < o.teachers.length; k++) {
    const t = o.teachers[k];
    const D = t.dim;
    const img = await t.embedImages(group.flatMap((p) => p.views[k]));
    const tok = await t.embedTokens(o.tokenizer.tokenize(texts, t.contextLength), texts.length);
    let ir = 0;
    let tr = 0;
    for (const s of out) {
      for (let a = 0; a < nAug; a++, ir++) s.imageEmb.set(img.subarray(ir * D, (ir + 1) * D), a * embDim + off);
      for (let r = 0; r < 1 + s.synText.length; r++, tr++) s.textEmb.set(tok.subarray(tr * D, (tr + 1) * D), r * embDim + off);
    }
    off += D;
  }
  return out;
}

/** Reinforces every input shard not yet done (see the file comment). */
export async function reinforceShards(o: ReinforceOptions): Promise<ReinforceSummary> {
  if (!Number.isInteger(o.augs) || o.augs < 1) throw new MclipError(`--augs must be a positive integer, got ${o.augs}`);
  const syn = o.syn ?? 5;
  if (!Number.isInteger(syn) || syn < 0) throw new MclipError(`--syn must be a non-negative integer, got ${syn}`);
  const seed = o.seed ?? 0;
  if (!Number.isInteger(seed)) throw new MclipError(`--seed must be an integer, got ${seed}`);
  const batch = o.batch ?? 32;
  if (o.teachers.length === 0) throw new MclipError('no teachers given (pass --teacher at least once)');
  for (const t of o.teachers)
    if (t.vocabSize !== undefined && t.vocabSize !== o.tokenizer.vocabSize)
      throw new MclipError(`teacher ${t.name}: text vocabulary ${t.vocabSize} ≠ the tokenizer's ${o.tokenizer.vocabSize} (pass the teacher's --vocab)`);
  const infos: TeacherInfo[] = o.teachers.map((t) => ({ name: t.name, dim: t.dim, logitScale: t.logitScale }));
  const embDim = infos.reduce((a, t) => a + t.dim, 0);
  const shards = listShards(o.input);
  const names = shards.map((s) => basename(s));
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup) throw new MclipError(`two input shards are named ${dup}; output shards keep the input basenames, so they must be unique`);

  try {
    mkdirSync(o.out, { recursive: true });
  } catch (e) {
    throw new MclipError(`cannot create ${o.out}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  checkSettings(
    o.out,
    {
      format: REINFORCE_FORMAT,
      // A normalising teacher's mean/std is recorded (an identity one's entry is as before, so older folders still match).
      teachers: o.teachers.map((t) => ({
        name: t.name,
        dim: t.dim,
        logit_scale: t.logitScale,
        image_size: t.imageSize,
        ...(t.preprocess && !isIdentityNormalisation(t.preprocess) ? { mean: [...t.preprocess.mean], std: [...t.preprocess.std] } : {}),
      })),
      augs: o.augs,
      seed,
      syn,
    },
    o.source ?? {},
  );

  const perGroup = Math.max(1, Math.floor(batch / o.augs));
  const augSize = o.teachers[0].imageSize;
  const sum: ReinforceSummary = { shards: shards.length, written: 0, skipped: 0, samples: 0, bad: 0 };
  for (let si = 0; si < shards.length; si++) {
    const input = shards[si];
    const name = names[si];
    const output = join(o.out, name);
    const t0 = Date.now();
    if (existsSync(output)) {
      sum.skipped++;
      o.onShard?.({ input, output, index: si, total: shards.length, status: 'skipped', samples: 0, bad: 0, seconds: 0 });
      continue;
    }
    removeStaleTemps(o.out, name);
    const reader = readImageTextDataset(input);
    const writer = new ShardWriter(o.out, { samplesPerShard: Number.MAX_SAFE_INTEGER, name: () => name });
    let n = 0;
    try {
      let group: Pending[] = [];
      const flush = async (): Promise<void> => {
        for (const s of await embedGroup(group, o, infos, embDim)) {
          await writer.write(s.key, encodeDrSample(s));
          n++;
          o.onSample?.();
        }
        group = [];
      };
      for await (const sample of reader) {
        const rgb = await decodeImage(Buffer.from(sample.image.buffer, sample.image.byteOffset, sample.image.byteLength));
        const img: RgbImage = { data: rgb.data, width: rgb.width, height: rgb.height };
        const augs = sampleAugs(seed, sample.key, img.width, img.height, o.augs, augSize);
        const views = o.teachers.map((t) => augs.map((a) => applyAug(img, a, t.imageSize)));
        group.push({ sample, syn: sample.captions.slice(0, syn), augs, views });
        if (group.length >= perGroup) await flush();
      }
      if (group.length > 0) await flush();
      const r = await writer.close();
      if (r.shards.length === 0) writeEmptyShard(output);
    } catch (e) {
      writer.abort();
      throw e;
    }
    const bad = reader.summary.skipped;
    sum.written++;
    sum.samples += n;
    sum.bad += bad;
    o.onShard?.({ input, output, index: si, total: shards.length, status: 'written', samples: n, bad, seconds: (Date.now() - t0) / 1000 });
  }
  return sum;
}
