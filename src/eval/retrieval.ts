/**
 * Image–text retrieval recall (methods.md §6, CLIP_benchmark): scores = cosine similarities.
 * Text→image: each caption queries the images; a hit at K when its image is in the top K.
 * Image→text: each image queries the captions; a hit at K when at least one of its captions is in
 * the top K. Ties are broken by index (as a stable top-k).
 */
import type * as tf from '../base/tf.js';
import { embedImages, embedTexts, matMulT, normalizeRows, type Encoder, type EmbedOptions, type Embeddings, type TextTokenizer } from './embed.js';
import { rankOf } from './zero-shot.js';

export interface RecallAtK {
  r1: number;
  r5: number;
  r10: number;
}

export interface RetrievalMetrics {
  /** Image → text (CLIP_benchmark `text_retrieval_recall@K`). */
  i2t: RecallAtK;
  /** Text → image (CLIP_benchmark `image_retrieval_recall@K`). */
  t2i: RecallAtK;
  /** (i2t.r1 + t2i.r1) / 2. */
  meanR1: number;
  /** Best rank (0-based) of a positive caption per image; -1 for an image without captions (skipped). */
  i2tRanks: Int32Array;
  /** Rank (0-based) of the right image per caption. */
  t2iRanks: Int32Array;
}

function recall(ranks: Int32Array): RecallAtK {
  let n = 0;
  const hits = [0, 0, 0];
  const ks = [1, 5, 10];
  for (const r of ranks) {
    if (r < 0) continue;
    n++;
    for (let i = 0; i < 3; i++) if (r < ks[i]) hits[i]++;
  }
  return n === 0 ? { r1: NaN, r5: NaN, r10: NaN } : { r1: hits[0] / n, r5: hits[1] / n, r10: hits[2] / n };
}

/**
 * Recall@1/5/10 both ways. `imageEmb` [nImages, dim], `textEmb` [nTexts, dim] (row-major, any
 * norm: rows are L2-normalised here); text i belongs to image `textToImage[i]`.
 */
export function retrievalMetrics(imageEmb: Float32Array, textEmb: Float32Array, dim: number, textToImage: ArrayLike<number>): RetrievalMetrics {
  const nI = imageEmb.length / dim;
  const nT = textEmb.length / dim;
  if (!Number.isInteger(nI) || !Number.isInteger(nT)) throw new Error(`embedding lengths are not multiples of dim ${dim}`);
  if (textToImage.length !== nT) throw new Error(`textToImage has ${textToImage.length} entries for ${nT} texts`);
  for (let i = 0; i < nT; i++) {
    const g = textToImage[i];
    if (!Number.isInteger(g) || g < 0 || g >= nI) throw new Error(`text ${i} maps to image ${g}, outside [0, ${nI})`);
  }
  const u = normalizeRows(imageEmb, dim);
  const t = normalizeRows(textEmb, dim);
  const s = matMulT(t, nT, u, nI, dim); // [nT, nI]
  const t2iRanks = new Int32Array(nT);
  for (let i = 0; i < nT; i++) t2iRanks[i] = rankOf(s, i * nI, nI, textToImage[i]);
  // image → text: column j of s, transposed once.
  const st = new Float32Array(nI * nT);
  for (let i = 0; i < nT; i++) for (let j = 0; j < nI; j++) st[j * nT + i] = s[i * nI + j];
  const i2tRanks = new Int32Array(nI).fill(-1);
  for (let i = 0; i < nT; i++) {
    const g = textToImage[i];
    const r = rankOf(st, g * nT, nT, i);
    if (i2tRanks[g] < 0 || r < i2tRanks[g]) i2tRanks[g] = r;
  }
  const i2t = recall(i2tRanks);
  const t2i = recall(t2iRanks);
  return { i2t, t2i, meanR1: (i2t.r1 + t2i.r1) / 2, i2tRanks, t2iRanks };
}

/** Retrieval metrics of pre-computed embeddings. */
export function scoreRetrieval(images: Embeddings, texts: Embeddings, textToImage: ArrayLike<number>): RetrievalMetrics {
  if (images.dim !== texts.dim) throw new Error(`image dim ${images.dim} ≠ text dim ${texts.dim}`);
  return retrievalMetrics(images.data, texts.data, images.dim, textToImage);
}

/** End to end: embeds the images (NHWC in [0,1]) and the captions with the model and scores them. */
export async function evaluateRetrieval(
  model: Encoder,
  tokenizer: TextTokenizer,
  images: tf.Tensor4D,
  captions: readonly string[],
  textToImage: ArrayLike<number>,
  opts: EmbedOptions & { contextLength?: number } = {},
): Promise<RetrievalMetrics> {
  const ie = await embedImages(model, images, opts);
  const te = await embedTexts(model, tokenizer, captions, opts);
  return scoreRetrieval(ie, te, textToImage);
}
