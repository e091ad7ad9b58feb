import * as tf from '../tf.js';
import { MclipError } from '../../errors.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { applyAug, readDrDataset, readImageTextDataset, teachersFor, type AugParams } from '../data/index.js';
import type { TeacherSpec } from './distill-loss.js';
import { decodeImage, transformRgb } from '../preprocess/index.js';
import { IDENTITY_PREPROCESS, isIdentityNormalisation, type PreprocessSpec } from '../preprocess/spec.js';
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

/** What both loaders take. */
export interface LoopOptions {
  seed?: number;
  limit?: number;
  /**
   * The trained model's preprocessing (`preprocessFor(model.cfg)`; default: the identity, bilinear): image
   * batches are `(x − mean) / std` per channel of the [0, 1] pixels, and `ImageTextLoop` resizes with its
   * filter. `ReinforcedLoop` replays the stored augmentations as they were made (their RandomResizedCrop is
   * bicubic whatever the model), so there only the normalisation applies.
   */
  preprocess?: PreprocessSpec;
}

/**
 * Bytes (HWC, RGB) → the batch's floats at `offset`: byte / 255, then `spec`'s per-channel normalisation
 * (skipped for the identity, so those batches are exactly byte / 255).
 */
function writePixels(px: Float32Array, offset: number, bytes: Uint8Array, spec: PreprocessSpec): void {
  if (isIdentityNormalisation(spec)) {
    for (let i = 0; i < bytes.length; i++) px[offset + i] = bytes[i] / 255;
    return;
  }
  const [m0, m1, m2] = spec.mean;
  const [s0, s1, s2] = spec.std;
  for (let i = 0; i < bytes.length; i += 3) {
    px[offset + i] = (bytes[i] / 255 - m0) / s0;
    px[offset + i + 1] = (bytes[i + 1] / 255 - m1) / s1;
    px[offset + i + 2] = (bytes[i + 2] / 255 - m2) / s2;
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
 * decoded and resized once to `size`×`size` (shorter side + centre crop, Pillow bilinear or the spec's
 * filter) and kept as bytes; batches are normalised by the spec as they are built. Epochs
 * are seeded permutations, and a batch pairs each image with its real caption and one synthetic
 * (alternative) caption chosen by a seeded RNG — so a position fully determines the next batch and
 * resumed runs see exactly the same data.
 */
export class ImageTextLoop extends ShuffledLoop<Example> {
  private constructor(
    examples: Example[],
    size: number,
    seed: number,
    readonly preprocess: PreprocessSpec,
  ) {
    super(examples, size, seed, 5);
  }

  static async load(dir: string, split: string, size: number, opts: LoopOptions = {}): Promise<ImageTextLoop> {
    const spec = opts.preprocess ?? IDENTITY_PREPROCESS;
    const reader = readImageTextDataset(dir, split);
    const examples: Example[] = [];
    for await (const s of reader) {
      examples.push({ key: s.key, rgb: await toModelPixels(s.image, size, spec), caption: s.caption, synthetic: s.captions });
      if (opts.limit !== undefined && examples.length >= opts.limit) break;
    }
    if (examples.length === 0) throw new MclipError(`${dir}/${split}: no training samples`);
    const sum = reader.summary;
    if (sum.skipped > 0) console.error(`mclip: ${dir}/${split}: skipped ${sum.skipped} damaged sample(s)`);
    return new ImageTextLoop(examples, size, opts.seed ?? 0, spec);
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
      writePixels(px, b * ex.rgb.length, ex.rgb, this.preprocess);
      gt.push(ex.caption);
      syn.push(ex.synthetic.length > 0 ? ex.synthetic[rng.int(ex.synthetic.length)] : ex.caption);
    }
    return { images: tf.tensor4d(px, [batch, s, s, 3]), ...captionTokens(tokenizer, gt, syn, contextLength) };
  }
}

/**
 * The official inference transform (shorter side → size with `spec`'s Pillow filter, centre crop; no
 * normalisation yet) kept as uint8 HWC: the transform yields exact k/255 values, so rounding back to bytes
 * is lossless.
 */
async function toModelPixels(png: Uint8Array, size: number, spec: PreprocessSpec): Promise<Uint8Array> {
  const resizeOnly: PreprocessSpec = { ...IDENTITY_PREPROCESS, interpolation: spec.interpolation };
  const chw = transformRgb(await decodeImage(Buffer.from(png)), size, undefined, 0, resizeOnly);
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
 * its stored augmentations (replayed at the student's size, values in [0,1], then normalised by the
 * student's spec), the real caption and
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
    readonly preprocess: PreprocessSpec,
  ) {
    super(examples, size, seed, 11);
  }

  static async load(dir: string, split: string, size: number, opts: LoopOptions = {}): Promise<ReinforcedLoop> {
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
    return new ReinforcedLoop(examples, size, embDim, teachers, opts.seed ?? 0, opts.preprocess ?? IDENTITY_PREPROCESS);
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
      writePixels(px, b * s * s * 3, view.data, this.preprocess);
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
