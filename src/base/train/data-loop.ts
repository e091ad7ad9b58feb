import * as tf from '../tf.js';
import { MclipError } from '../../errors.js';
import { readImageTextDataset } from '../data/index.js';
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
 * An in-memory image–text training set (small datasets such as the emoji shards): images are
 * decoded and resized once to `size`×`size` (shorter side + centre crop, Pillow bilinear), epochs
 * are seeded permutations, and a batch pairs each image with its real caption and one synthetic
 * (alternative) caption chosen by a seeded RNG — so a position fully determines the next batch and
 * resumed runs see exactly the same data.
 */
export class ImageTextLoop {
  private readonly examples: Example[];
  readonly size: number;
  private readonly seed: number;
  private perm: Int32Array | null = null;
  private permEpoch = -1;
  position: DataPosition = { epoch: 0, index: 0 };

  private constructor(examples: Example[], size: number, seed: number) {
    this.examples = examples;
    this.size = size;
    this.seed = seed;
  }

  get length(): number {
    return this.examples.length;
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

  private permutation(epoch: number): Int32Array {
    if (this.permEpoch !== epoch || !this.perm) {
      const rng = new Rng((this.seed * 1_000_003 + epoch * 7919 + 1) >>> 0);
      const p = Int32Array.from(this.examples, (_, i) => i);
      for (let i = p.length - 1; i > 0; i--) {
        const j = rng.int(i + 1);
        const t = p[i];
        p[i] = p[j];
        p[j] = t;
      }
      this.perm = p;
      this.permEpoch = epoch;
    }
    return this.perm;
  }

  /** Next batch (drops the ragged end of an epoch) and the position after it. Caller disposes tensors. */
  next(batch: number, tokenizer: ClipTokenizer, contextLength: number): TrainBatch {
    if (batch > this.examples.length) throw new MclipError(`batch ${batch} is larger than the dataset (${this.examples.length} samples)`);
    let { epoch, index } = this.position;
    if (index + batch > this.examples.length) {
      epoch += 1;
      index = 0;
    }
    const perm = this.permutation(epoch);
    const s = this.size;
    const px = new Float32Array(batch * s * s * 3);
    const gt: string[] = [];
    const syn: string[] = [];
    const rng = new Rng((this.seed * 31 + epoch * 1_000_033 + index * 17 + 5) >>> 0);
    for (let b = 0; b < batch; b++) {
      const ex = this.examples[perm[index + b]];
      for (let i = 0; i < ex.rgb.length; i++) px[b * ex.rgb.length + i] = ex.rgb[i] / 255;
      gt.push(ex.caption);
      syn.push(ex.synthetic.length > 0 ? ex.synthetic[rng.int(ex.synthetic.length)] : ex.caption);
    }
    this.position = { epoch, index: index + batch };
    return {
      images: tf.tensor4d(px, [batch, s, s, 3]),
      gtTokens: tf.tensor2d(tokenizer.tokenize(gt, contextLength), [batch, contextLength], 'int32'),
      synTokens: tf.tensor2d(tokenizer.tokenize(syn, contextLength), [batch, contextLength], 'int32'),
    };
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
