/**
 * Zero-shot classification (methods.md §6; open_clip `build_zero_shot_classifier`): per class, the
 * mean of the L2-normalised embeddings of its prompts, re-normalised; logits = û · Wᵀ for
 * L2-normalised image embeddings û; top-k accuracy, per-class accuracy and confusion counts.
 * The metric functions are pure (Float32Array in, numbers out); `buildClassifier` and
 * `evaluateZeroShot` embed with a CLIP model or an engine (engine.ts).
 */
import type * as tf from '../base/tf.js';
import { embedImages, embedTexts, matMulT, normalizeRows, type Encoder, type EmbedOptions, type Embeddings, type TextTokenizer } from './embed.js';
import { fillTemplate, resolveTemplates } from './templates.js';

/** Zero-shot classifier W: row c is the unit class embedding w_c ([numClasses, dim], row-major). */
export interface ZeroShotClassifier {
  weights: Float32Array;
  numClasses: number;
  dim: number;
  classNames?: string[];
}

export interface ZeroShotMetrics {
  /** Fraction of samples whose label is the arg-max logit. */
  top1: number;
  /** Fraction whose label is among the min(5, numClasses) largest logits. */
  top5: number;
  /** The k actually used for `top5`. */
  top5K: number;
  n: number;
  /** Accuracy (top-1) per true class; NaN for a class without samples. */
  perClass: number[];
  /** Mean of the defined per-class accuracies (the "mean per-class recall" of §6). */
  meanPerClass: number;
  /** confusion[true][predicted] = count. */
  confusion: number[][];
  /** Arg-max prediction per sample. */
  predictions: Int32Array;
}

/**
 * Builds W from prompt embeddings laid out class-major: row c·M + m is the embedding of
 * template m for class c (M = numTemplates). Each row is normalised, the M rows are averaged,
 * and the mean is normalised again.
 */
export function buildZeroShotClassifier(textEmb: Float32Array, numClasses: number, numTemplates: number, dim: number): ZeroShotClassifier {
  if (textEmb.length !== numClasses * numTemplates * dim) {
    throw new Error(`expected ${numClasses}×${numTemplates}×${dim} values, got ${textEmb.length}`);
  }
  const unit = normalizeRows(textEmb, dim);
  const mean = new Float32Array(numClasses * dim);
  for (let c = 0; c < numClasses; c++) {
    for (let m = 0; m < numTemplates; m++) {
      const o = (c * numTemplates + m) * dim;
      for (let j = 0; j < dim; j++) mean[c * dim + j] += unit[o + j] / numTemplates;
    }
  }
  return { weights: normalizeRows(mean, dim), numClasses, dim };
}

/** Logits [n, numClasses] = scale · normalise(imageEmb) · Wᵀ (scale 100 as open_clip; irrelevant for ranking). */
export function zeroShotLogits(imageEmb: Float32Array, n: number, clf: ZeroShotClassifier, scale = 100): Float32Array {
  if (imageEmb.length !== n * clf.dim) throw new Error(`expected ${n}×${clf.dim} image values, got ${imageEmb.length}`);
  const u = normalizeRows(imageEmb, clf.dim);
  const logits = matMulT(u, n, clf.weights, clf.numClasses, clf.dim);
  if (scale !== 1) for (let i = 0; i < logits.length; i++) logits[i] *= scale;
  return logits;
}

/**
 * Rank (0 = best) of column `target` in a row of scores: the number of columns with a larger
 * score, plus ties at a lower index (the order a stable top-k returns).
 */
export function rankOf(row: ArrayLike<number>, offset: number, width: number, target: number): number {
  const v = row[offset + target];
  let r = 0;
  for (let j = 0; j < width; j++) {
    const s = row[offset + j];
    if (s > v || (s === v && j < target)) r++;
  }
  return r;
}

/** Top-1 / top-5 accuracy, per-class accuracy and confusion counts from logits [n, numClasses]. */
export function zeroShotMetrics(logits: Float32Array, labels: ArrayLike<number>, numClasses: number): ZeroShotMetrics {
  const n = labels.length;
  if (logits.length !== n * numClasses) throw new Error(`expected ${n}×${numClasses} logits, got ${logits.length}`);
  const k5 = Math.min(5, numClasses);
  const confusion = Array.from({ length: numClasses }, () => new Array<number>(numClasses).fill(0));
  const predictions = new Int32Array(n);
  const correct = new Array<number>(numClasses).fill(0);
  const total = new Array<number>(numClasses).fill(0);
  let c1 = 0;
  let c5 = 0;
  for (let i = 0; i < n; i++) {
    const y = labels[i];
    if (!Number.isInteger(y) || y < 0 || y >= numClasses) throw new Error(`label ${y} of sample ${i} is outside [0, ${numClasses})`);
    const o = i * numClasses;
    let best = 0;
    for (let j = 1; j < numClasses; j++) if (logits[o + j] > logits[o + best]) best = j;
    predictions[i] = best;
    confusion[y][best]++;
    total[y]++;
    const r = rankOf(logits, o, numClasses, y);
    if (r === 0) {
      c1++;
      correct[y]++;
    }
    if (r < k5) c5++;
  }
  const perClass = total.map((t, c) => (t > 0 ? correct[c] / t : NaN));
  const defined = perClass.filter((a) => !Number.isNaN(a));
  return {
    top1: n > 0 ? c1 / n : NaN,
    top5: n > 0 ? c5 / n : NaN,
    top5K: k5,
    n,
    perClass,
    meanPerClass: defined.length > 0 ? defined.reduce((a, b) => a + b, 0) / defined.length : NaN,
    confusion,
    predictions,
  };
}

export interface BuildClassifierOptions extends EmbedOptions {
  /** Template strings with `{}`, or a set name: 'openai' (80), 'simple' (7), 'emoji', 'single'. Default 'openai'. */
  templates?: string | readonly string[];
  contextLength?: number;
}

/** Embeds every (class, template) prompt with the model and builds W. */
export async function buildClassifier(
  model: Encoder,
  tokenizer: TextTokenizer,
  classNames: readonly string[],
  opts: BuildClassifierOptions = {},
): Promise<ZeroShotClassifier> {
  const templates = resolveTemplates(opts.templates ?? 'openai');
  if (classNames.length === 0 || templates.length === 0) throw new Error('need at least one class name and one template');
  const prompts = classNames.flatMap((c) => templates.map((t) => fillTemplate(t, c)));
  const e = await embedTexts(model, tokenizer, prompts, { ...opts, normalize: true });
  return { ...buildZeroShotClassifier(e.data, classNames.length, templates.length, e.dim), classNames: [...classNames] };
}

/** Zero-shot metrics of pre-computed image embeddings against a classifier. */
export function scoreZeroShot(images: Embeddings, labels: ArrayLike<number>, clf: ZeroShotClassifier): ZeroShotMetrics {
  if (images.dim !== clf.dim) throw new Error(`image embedding dim ${images.dim} ≠ classifier dim ${clf.dim}`);
  return zeroShotMetrics(zeroShotLogits(images.data, images.n, clf), labels, clf.numClasses);
}

/** End to end: builds W from class names, embeds the images (NHWC [N,H,W,3] in [0,1]) and scores them. */
export async function evaluateZeroShot(
  model: Encoder,
  tokenizer: TextTokenizer,
  images: tf.Tensor4D,
  labels: ArrayLike<number>,
  classNames: readonly string[],
  opts: BuildClassifierOptions = {},
): Promise<ZeroShotMetrics & { classifier: ZeroShotClassifier }> {
  const classifier = await buildClassifier(model, tokenizer, classNames, opts);
  const emb = await embedImages(model, images, opts);
  return { ...scoreZeroShot(emb, labels, classifier), classifier };
}
