import * as tf from '../base/tf.js';
import { l2normalize, type CLIP } from '../base/model/clip.js';

/** Row-major [n, dim] embeddings on the JS side. */
export interface Embeddings {
  data: Float32Array;
  n: number;
  dim: number;
}

/** The part of a CLIP model the evaluation needs (CLIP satisfies it). */
export type ClipEncoder = Pick<CLIP, 'encodeImage' | 'encodeText'>;

/** Anything that turns texts into int32 ids [texts.length, contextLength] (ClipTokenizer does). */
export interface TextTokenizer {
  tokenize(texts: readonly string[], contextLength?: number): Int32Array;
}

export interface EmbedOptions {
  /** Rows per forward pass (default 32). */
  batchSize?: number;
  /** L2-normalise each row (default true). */
  normalize?: boolean;
  /** Called after each batch with the number of rows it embedded (progress reporting). */
  onRows?: (rows: number) => void;
}

/** Runs `encode` on row batches of `x` (first axis) inside tf.tidy and gathers the rows. */
async function embedBatches(x: tf.Tensor, encode: (b: tf.Tensor) => tf.Tensor, opts: EmbedOptions): Promise<Embeddings> {
  const n = x.shape[0] as number;
  const bs = Math.max(1, opts.batchSize ?? 32);
  const normalize = opts.normalize ?? true;
  let data: Float32Array | null = null;
  let dim = 0;
  for (let s = 0; s < n; s += bs) {
    const m = Math.min(bs, n - s);
    const y = tf.tidy(() => {
      const begin = x.shape.map((_, i) => (i === 0 ? s : 0));
      const size = x.shape.map((d, i) => (i === 0 ? m : (d as number)));
      const e = encode(x.slice(begin, size));
      return normalize ? l2normalize(e) : e;
    });
    try {
      const v = (await y.data()) as Float32Array;
      if (data == null) {
        dim = y.shape[1] as number;
        data = new Float32Array(n * dim);
      }
      data.set(v, s * dim);
    } finally {
      y.dispose();
    }
    opts.onRows?.(m);
  }
  return { data: data ?? new Float32Array(0), n, dim };
}

/** Images NHWC [N, H, W, 3] in [0, 1] → (normalised) image embeddings [N, D]. `images` stays owned by the caller. */
export function embedImages(model: ClipEncoder, images: tf.Tensor4D, opts: EmbedOptions = {}): Promise<Embeddings> {
  return embedBatches(images, (b) => model.encodeImage(b), opts);
}

/** Token ids (int32, row-major [N, contextLength]) → (normalised) text embeddings [N, D]. */
export async function embedTokens(model: ClipEncoder, tokens: Int32Array, contextLength: number, opts: EmbedOptions = {}): Promise<Embeddings> {
  if (tokens.length % contextLength !== 0) throw new Error(`token array length ${tokens.length} is not a multiple of ${contextLength}`);
  const t = tf.tensor2d(tokens, [tokens.length / contextLength, contextLength], 'int32');
  try {
    return await embedBatches(t, (b) => model.encodeText(b), opts);
  } finally {
    t.dispose();
  }
}

/** Texts → (normalised) text embeddings [N, D]. */
export function embedTexts(
  model: ClipEncoder,
  tokenizer: TextTokenizer,
  texts: readonly string[],
  opts: EmbedOptions & { contextLength?: number } = {},
): Promise<Embeddings> {
  const ctx = opts.contextLength ?? 77;
  return embedTokens(model, tokenizer.tokenize(texts, ctx), ctx, opts);
}

/** L2-normalises each row of a row-major [n, dim] array (a copy; zero rows stay zero). */
export function normalizeRows(data: Float32Array, dim: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let o = 0; o < data.length; o += dim) {
    let s = 0;
    for (let j = 0; j < dim; j++) s += data[o + j] * data[o + j];
    const inv = 1 / Math.max(Math.sqrt(s), 1e-12);
    for (let j = 0; j < dim; j++) out[o + j] = data[o + j] * inv;
  }
  return out;
}

/** a [n, dim] · b [m, dim]ᵀ → [n, m]. */
export function matMulT(a: Float32Array, n: number, b: Float32Array, m: number, dim: number): Float32Array {
  const out = new Float32Array(n * m);
  for (let i = 0; i < n; i++) {
    const ai = i * dim;
    for (let j = 0; j < m; j++) {
      const bj = j * dim;
      let s = 0;
      for (let k = 0; k < dim; k++) s += a[ai + k] * b[bj + k];
      out[i * m + j] = s;
    }
  }
  return out;
}
