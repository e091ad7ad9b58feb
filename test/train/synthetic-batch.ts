/**
 * Deterministic synthetic training batches for the trainer tests: images, ground-truth captions, two
 * synthetic caption variants (one picked, as the reinforced loop picks one per sample) and teacher
 * features of width `teacherWidth`, all keyed by the step index.
 */
import * as tf from '../../src/base/tf.js';
import type { ClipConfig } from '../../src/base/model/configs.js';
import type { TrainBatch } from '../../src/base/train/loss-terms.js';
import type { TeacherSpec } from '../../src/base/train/distill-loss.js';

/** Two stored teachers of widths 8 and 12 (inverse temperatures 100 and 50): 20 values per sample. */
export const TEST_TEACHERS: TeacherSpec[] = [
  { dim: 8, logitScale: 100 },
  { dim: 12, logitScale: 50 },
];
export const TEST_TEACHER_WIDTH = 20;

export interface SyntheticBatchOptions {
  /** Samples per batch. */
  batch: number;
  /** Token rows of this length. */
  context: number;
  /** Seed base (the step index is mixed in). */
  seed: number;
  /** Width of the concatenated teacher features. */
  teacherWidth: number;
  /** Which of the two synthetic caption variants (and their teacher features) the batch carries. */
  pick?: 0 | 1;
}

export function syntheticBatch(cfg: ClipConfig, step: number, o: SyntheticBatchOptions): TrainBatch {
  const { batch: B, context: L, teacherWidth: W } = o;
  const S = cfg.image.imageSize;
  let s = o.seed + step * 7919;
  const rnd = () => (s = (s * 1103515245 + 12345) % 2147483648) / 2147483648;
  const images = Float32Array.from({ length: B * S * S * 3 }, rnd);
  const tokens = (variant: number) => {
    const t = new Int32Array(B * L);
    for (let b = 0; b < B; b++) {
      const len = 4 + ((b + variant + step) % 6);
      t[b * L] = cfg.text.vocabSize - 2;
      for (let j = 1; j < len; j++) t[b * L + j] = 1 + Math.floor(rnd() * (cfg.text.vocabSize - 3));
      t[b * L + len] = cfg.text.vocabSize - 1;
    }
    return t;
  };
  const gt = tokens(0);
  const syns = [tokens(1), tokens(2)];
  const feats = () => Float32Array.from({ length: B * W }, () => rnd() - 0.5);
  const teacherSyns = [feats(), feats()];
  const teacherImg = feats();
  const teacherGt = feats();
  const pick = o.pick ?? 0;
  return {
    images: tf.tensor4d(images, [B, S, S, 3]),
    gtTokens: tf.tensor2d(gt, [B, L], 'int32'),
    synTokens: tf.tensor2d(syns[pick], [B, L], 'int32'),
    teacherImg,
    teacherGt,
    teacherSyn: teacherSyns[pick],
  };
}
