import * as tf from '../base/tf.js';
import { l2normalize, type CLIP } from '../base/model/clip.js';
import { isEngine, TfjsEngine, type ImageTextEncoder } from './engine.js';

/** Row-major [n, dim] embeddings on the JS side. */
export interface Embeddings {
  data: Float32Array;
  n: number;
  dim: number;
}

/** The part of a CLIP model the evaluation needs (CLIP satisfies it). */
export type ClipEncoder = Pick<CLIP, 'encodeImage' | 'encodeText'>;

/** What the embedding functions run: a tfjs model, or an engine (engine.ts: tfjs or onnxruntime). */
export type Encoder = ClipEncoder | ImageTextEncoder;

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

/** Runs `encode` on row batches of `x` (first axis) inside tf.tidy (normalising there) and gathers the rows. */
function embedBatches(x: tf.Tensor, encode: (b: tf.Tensor) => tf.Tensor, opts: EmbedOptions): Promise<Embeddings> {
  const normalize = opts.normalize ?? true;
  return embedWith(
    x.shape[0] as number,
    async (s, m) => {
      const y = tf.tidy(() => {
        const begin = x.shape.map((_, i) => (i === 0 ? s : 0));
        const size = x.shape.map((d, i) => (i === 0 ? m : (d as number)));
        const e = encode(x.slice(begin, size));
        return normalize ? l2normalize(e) : e;
      });
      try {
        return (await y.data()) as Float32Array;
      } finally {
        y.dispose();
      }
    },
    { ...opts, normalize: false },
  );
}

/** Runs `rows(start, count)` (features [count, D] on the JS side) on row batches of n rows and gathers them. */
async function embedWith(n: number, rows: (s: number, m: number) => Promise<Float32Array>, opts: EmbedOptions): Promise<Embeddings> {
  const bs = Math.max(1, opts.batchSize ?? 32);
  const normalize = opts.normalize ?? true;
  let data: Float32Array | null = null;
  let dim = 0;
  for (let s = 0; s < n; s += bs) {
    const m = Math.min(bs, n - s);
    const f = await rows(s, m);
    if (data == null) {
      dim = f.length / m;
      if (!Number.isInteger(dim) || dim < 1) throw new Error(`the engine returned ${f.length} values for ${m} rows`);
      data = new Float32Array(n * dim);
    } else if (f.length !== m * dim) throw new Error(`the engine returned ${f.length} values for ${m} rows of ${dim}`);
    data.set(normalize ? normalizeRows(f, dim) : f, s * dim);
    opts.onRows?.(m);
  }
  return { data: data ?? new Float32Array(0), n, dim };
}

/** The tfjs model behind `enc` (a model itself or a `TfjsEngine`), or the other engine. */
function split(enc: Encoder): { model: ClipEncoder; engine?: undefined } | { model?: undefined; engine: ImageTextEncoder } {
  if (!isEngine(enc)) return { model: enc };
  if (enc instanceof TfjsEngine) return { model: enc.model };
  return { engine: enc };
}

/**
 * Images NHWC [N, H, W, 3] in [0, 1] → (normalised) image embeddings [N, D]. `images` stays owned by the caller.
 * A tfjs model (or `TfjsEngine`) runs on the tensor's batches; another engine gets each batch read back in its layout.
 */
export function embedImages(model: Encoder, images: tf.Tensor4D, opts: EmbedOptions = {}): Promise<Embeddings> {
  const { model: m, engine } = split(model);
  if (m) return embedBatches(images, (b) => m.encodeImage(b), opts);
  const [, h, w, c] = images.shape;
  return embedWith(images.shape[0], async (s, k) => {
    const b = images.slice([s, 0, 0, 0], [k, h, w, c]);
    let px: Float32Array;
    try {
      px = (await b.data()) as Float32Array;
    } finally {
      b.dispose();
    }
    // NHWC as stored: an 'nchw' engine converts in JS (faster than the wasm backend's general transpose)
    return engine.encodeImages(px, k, 'nhwc');
  }, opts);
}

/** Token ids (int32, row-major [N, contextLength]) → (normalised) text embeddings [N, D]. */
export async function embedTokens(model: Encoder, tokens: Int32Array, contextLength: number, opts: EmbedOptions = {}): Promise<Embeddings> {
  if (tokens.length % contextLength !== 0) throw new Error(`token array length ${tokens.length} is not a multiple of ${contextLength}`);
  const { model: enc, engine } = split(model);
  if (!enc) {
    return embedWith(tokens.length / contextLength, (s, k) => engine.encodeTexts(tokens.subarray(s * contextLength, (s + k) * contextLength), k), opts);
  }
  const t = tf.tensor2d(tokens, [tokens.length / contextLength, contextLength], 'int32');
  try {
    return await embedBatches(t, (b) => enc.encodeText(b), opts);
  } finally {
    t.dispose();
  }
}

/** Texts → (normalised) text embeddings [N, D]. */
export function embedTexts(
  model: Encoder,
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

/** Output elements per block of `matMulT`'s backend path (16 MB of float32). */
const MATMUL_BLOCK_ELEMS = 4 * 1024 * 1024;

/**
 * a [n, dim] · b [m, dim]ᵀ → [n, m]. With a tfjs backend initialised (`mclip eval` has one) it runs there, in row
 * blocks of at most `blockElems` outputs: the wasm backend's SIMD GEMM takes ~0.1 s for the 3,645 × 3,645 × 128
 * retrieval matrix of the emoji split, which the JS loop took ~1.2 s for. Without a backend (or with
 * `backend: false`) it is `matMulTLoop`. The two agree to float32 rounding (the loop sums in float64).
 */
export function matMulT(a: Float32Array, n: number, b: Float32Array, m: number, dim: number, o: { backend?: boolean; blockElems?: number } = {}): Float32Array {
  if (!(o.backend ?? tf.engine().backendName != null) || n * m * dim === 0) return matMulTLoop(a, n, b, m, dim);
  const out = new Float32Array(n * m);
  const rows = Math.max(1, Math.floor((o.blockElems ?? MATMUL_BLOCK_ELEMS) / m));
  const bt = tf.tensor2d(b.subarray(0, m * dim), [m, dim]);
  try {
    for (let i = 0; i < n; i += rows) {
      const k = Math.min(rows, n - i);
      out.set(tf.tidy(() => tf.matMul(tf.tensor2d(a.subarray(i * dim, (i + k) * dim), [k, dim]), bt, false, true).dataSync() as Float32Array), i * m);
    }
  } finally {
    bt.dispose();
  }
  return out;
}

/**
 * a [n, dim] · b [m, dim]ᵀ → [n, m] in plain JS. Four rows of `a` at a time share each load of `b` (2–3× the
 * one-row loop on a 1,000 × 1,000 × 128 retrieval matrix); every output is the same float64 sum over k in order
 * as in the one-row loop, so the values are identical to it.
 */
export function matMulTLoop(a: Float32Array, n: number, b: Float32Array, m: number, dim: number): Float32Array {
  const out = new Float32Array(n * m);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const a0 = i * dim;
    const a1 = a0 + dim;
    const a2 = a1 + dim;
    const a3 = a2 + dim;
    const o = i * m;
    for (let j = 0; j < m; j++) {
      const bj = j * dim;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      for (let k = 0; k < dim; k++) {
        const v = b[bj + k];
        s0 += a[a0 + k] * v;
        s1 += a[a1 + k] * v;
        s2 += a[a2 + k] * v;
        s3 += a[a3 + k] * v;
      }
      out[o + j] = s0;
      out[o + m + j] = s1;
      out[o + 2 * m + j] = s2;
      out[o + 3 * m + j] = s3;
    }
  }
  for (; i < n; i++) {
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
