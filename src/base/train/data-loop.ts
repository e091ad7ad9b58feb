import * as tf from '../tf.js';
import { MclipError } from '../../errors.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { applyAug, readDrDataset, readImageTextDataset, teachersFor, type AugParams } from '../data/index.js';
import type { TeacherSpec } from './distill-loss.js';
import { decodeImage, transformRgb } from '../preprocess/index.js';
import type { ClipTokenizer } from '../tokenizer/index.js';
import { Rng, type TrainBatch } from './trainer.js';

/** One training example held in memory: pixels already at the model's input size. */
interface Example {
  key: string;
  rgb: Uint8Array;
  caption: string;
  synthetic: string[];
}

/** Where the loop is: epoch and index into that epoch's permutation (stored in checkpoints). */
export interface DataPosition {
  epoch: number;
  index: number;
}

/**
 * What both loops share: examples held in memory, seeded epochs over them, the position to store in
 * checkpoints, and a per-batch RNG keyed by (seed, position, salt) so a position fully determines
 * the next batch.
 */
abstract class ShuffledLoop<E> {
  private readonly sampler: EpochSampler;

  protected constructor(
    protected readonly examples: E[],
    readonly size: number,
    private readonly seed: number,
    private readonly salt: number,
  ) {
    this.sampler = new EpochSampler(examples.length, seed);
  }

  /** Where the loop is (stored in checkpoints; assign to resume). */
  get position(): DataPosition {
    return this.sampler.position;
  }

  set position(p: DataPosition) {
    this.sampler.position = p;
  }

  get length(): number {
    return this.examples.length;
  }

  /** The next batch's examples (advancing the position) and the RNG for that batch's choices. */
  protected draw(batch: number): { items: E[]; rng: Rng } {
    const { order, epoch, index } = this.sampler.take(batch);
    const rng = new Rng((this.seed * 31 + epoch * 1_000_033 + index * 17 + this.salt) >>> 0);
    return { items: Array.from(order, (i) => this.examples[i]), rng };
  }
}

/** Token tensors [b, contextLength] int32 of the real and the synthetic captions of a batch. */
function captionTokens(tokenizer: ClipTokenizer, gt: string[], syn: string[], contextLength: number): Pick<TrainBatch, 'gtTokens' | 'synTokens'> {
  return {
    gtTokens: tf.tensor2d(tokenizer.tokenize(gt, contextLength), [gt.length, contextLength], 'int32'),
    synTokens: tf.tensor2d(tokenizer.tokenize(syn, contextLength), [syn.length, contextLength], 'int32'),
  };
}

/**
 * An in-memory image–text training set (small datasets such as the emoji shards): images are
 * decoded and resized once to `size`×`size` (shorter side + centre crop, Pillow bilinear), epochs
 * are seeded permutations, and a batch pairs each image with its real caption and one synthetic
 * (alternative) caption chosen by a seeded RNG — so a position fully determines the next batch and
 * resumed runs see exactly the same data.
 */
export class ImageTextLoop extends ShuffledLoop<Example> {
  private constructor(examples: Example[], size: number, seed: number) {
    super(examples, size, seed, 5);
  }

  static async load(dir: string, split: string, size: number, opts: { seed?: number; limit?: number } = {}): Promise<ImageTextLoop> {
    const reader = readImageTextDataset(dir, split);
    const examples: Example[] = [];
    for await (const s of reader) {
      examples.push({ key: s.key, rgb: await toModelPixels(s.image, size), caption: s.caption, synthetic: s.captions });
      if (opts.limit !== undefined && examples.length >= opts.limit) break;
    }
    if (examples.length === 0) throw new MclipError(`${dir}/${split}: no training samples`);
    const sum = reader.summary;
    if (sum.skipped > 0) console.error(`mclip: ${dir}/${split}: skipped ${sum.skipped} damaged sample(s)`);
    return new ImageTextLoop(examples, size, opts.seed ?? 0);
  }

  /** Next batch (drops the ragged end of an epoch) and the position after it. Caller disposes tensors. */
  next(batch: number, tokenizer: ClipTokenizer, contextLength: number): TrainBatch {
    const { items, rng } = this.draw(batch);
    const s = this.size;
    const px = new Float32Array(batch * s * s * 3);
    const gt: string[] = [];
    const syn: string[] = [];
    for (let b = 0; b < batch; b++) {
      const ex = items[b];
      for (let i = 0; i < ex.rgb.length; i++) px[b * ex.rgb.length + i] = ex.rgb[i] / 255;
      gt.push(ex.caption);
      syn.push(ex.synthetic.length > 0 ? ex.synthetic[rng.int(ex.synthetic.length)] : ex.caption);
    }
    return { images: tf.tensor4d(px, [batch, s, s, 3]), ...captionTokens(tokenizer, gt, syn, contextLength) };
  }
}

/**
 * The official inference transform (shorter side → size, Pillow bilinear, centre crop) kept as
 * uint8 HWC: the transform yields exact k/255 values, so rounding back to bytes is lossless.
 */
async function toModelPixels(png: Uint8Array, size: number): Promise<Uint8Array> {
  const chw = transformRgb(await decodeImage(Buffer.from(png)), size);
  const hw = size * size;
  const out = new Uint8Array(hw * 3);
  for (let c = 0; c < 3; c++) for (let i = 0; i < hw; i++) out[i * 3 + c] = Math.round(chw[c * hw + i] * 255);
  return out;
}

/** One reinforced example: the original image, its stored augmentations and teacher embeddings. */
interface DrExample {
  key: string;
  rgb: { data: Uint8Array; width: number; height: number };
  caption: string;
  synText: string[];
  paramAug: AugParams[];
  imageEmb: Float32Array;
  textEmb: Float32Array;
}

/**
 * Multi-modal reinforced training data (methods.md §2.2): each step pairs every image with one of
 * its stored augmentations (replayed at the student's size, values in [0,1]), the real caption and
 * one synthetic caption, plus the stored teacher embeddings of exactly those — no teacher runs.
 * Choices are drawn from a seeded RNG keyed by the position, so resumed runs see the same batches.
 */
export class ReinforcedLoop extends ShuffledLoop<DrExample> {
  private constructor(
    examples: DrExample[],
    size: number,
    readonly embDim: number,
    readonly teachers: TeacherSpec[],
    seed: number,
  ) {
    super(examples, size, seed, 11);
  }

  static async load(dir: string, split: string, size: number, opts: { seed?: number; limit?: number } = {}): Promise<ReinforcedLoop> {
    const source = existsSync(join(dir, split)) ? join(dir, split) : dir;
    const reader = readDrDataset(source);
    const examples: DrExample[] = [];
    let embDim = -1;
    let teachers: TeacherSpec[] | null = null;
    for await (const s of reader) {
      if (!s.image) throw new MclipError(`${source}: sample '${s.key}' has no image member (png/jpg); reinforced training needs the images`);
      if (s.paramAug.length === 0) throw new MclipError(`${source}: sample '${s.key}' has no stored augmentation`);
      if (embDim < 0) {
        embDim = s.embDim;
        teachers = teachersFor(s.embDim, s.teachers).map((t) => ({ dim: t.dim, logitScale: t.logitScale }));
      } else if (s.embDim !== embDim) {
        throw new MclipError(`${source}: sample '${s.key}' has teacher width ${s.embDim}, earlier samples ${embDim}`);
      }
      const img = await decodeImage(Buffer.from(s.image.bytes));
      examples.push({
        key: s.key,
        rgb: { data: img.data, width: img.width, height: img.height },
        caption: s.caption ?? '',
        synText: s.synText,
        paramAug: s.paramAug,
        imageEmb: s.imageEmb,
        textEmb: s.textEmb,
      });
      if (opts.limit !== undefined && examples.length >= opts.limit) break;
    }
    if (examples.length === 0 || !teachers) throw new MclipError(`${source}: no reinforced samples (build them with 'mclip reinforce')`);
    return new ReinforcedLoop(examples, size, embDim, teachers, opts.seed ?? 0);
  }

  /** Next batch with teacher targets; the ragged end of an epoch is dropped. Caller disposes tensors. */
  next(batch: number, tokenizer: ClipTokenizer, contextLength: number): TrainBatch {
    const { items, rng } = this.draw(batch);
    const s = this.size;
    const d = this.embDim;
    const px = new Float32Array(batch * s * s * 3);
    const tImg = new Float32Array(batch * d);
    const tGt = new Float32Array(batch * d);
    const tSyn = new Float32Array(batch * d);
    const gt: string[] = [];
    const syn: string[] = [];
    for (let b = 0; b < batch; b++) {
      const ex = items[b];
      const a = rng.int(ex.paramAug.length);
      const view = applyAug(ex.rgb, ex.paramAug[a], s);
      for (let i = 0; i < view.data.length; i++) px[b * s * s * 3 + i] = view.data[i] / 255;
      tImg.set(ex.imageEmb.subarray(a * d, (a + 1) * d), b * d);
      tGt.set(ex.textEmb.subarray(0, d), b * d);
      gt.push(ex.caption);
      if (ex.synText.length > 0) {
        const k = rng.int(ex.synText.length);
        syn.push(ex.synText[k]);
        tSyn.set(ex.textEmb.subarray((1 + k) * d, (2 + k) * d), b * d);
      } else {
        syn.push(ex.caption);
        tSyn.set(ex.textEmb.subarray(0, d), b * d);
      }
    }
    return {
      images: tf.tensor4d(px, [batch, s, s, 3]),
      ...captionTokens(tokenizer, gt, syn, contextLength),
      teacherImg: tImg,
      teacherGt: tGt,
      teacherSyn: tSyn,
    };
  }
}

/**
 * Seeded epochs over n samples: each epoch is a permutation, a batch never straddles two epochs
 * (the ragged end is dropped), and the position fully determines what comes next.
 */
export class EpochSampler {
  position: DataPosition = { epoch: 0, index: 0 };
  private perm: Int32Array | null = null;
  private permEpoch = -1;

  constructor(
    private readonly n: number,
    private readonly seed: number,
  ) {}

  /** The sample indices of the next batch and the (epoch, index) it starts at; advances the position. */
  take(batch: number): { order: Int32Array; epoch: number; index: number } {
    if (batch > this.n) throw new MclipError(`batch ${batch} is larger than the dataset (${this.n} samples)`);
    let { epoch, index } = this.position;
    if (index + batch > this.n) {
      epoch += 1;
      index = 0;
    }
    if (this.permEpoch !== epoch || !this.perm) {
      this.perm = seededPermutation(this.n, this.seed, epoch);
      this.permEpoch = epoch;
    }
    this.position = { epoch, index: index + batch };
    return { order: this.perm.subarray(index, index + batch), epoch, index };
  }
}

/** Fisher–Yates permutation of 0..n-1 seeded by (seed, epoch). */
export function seededPermutation(n: number, seed: number, epoch: number): Int32Array {
  const rng = new Rng((seed * 1_000_003 + epoch * 7919 + 1) >>> 0);
  const p = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  return p;
}
