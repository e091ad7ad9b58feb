/**
 * onnxruntime-node checks of an exported model: parity with the tfjs model on random inputs,
 * and latency (median / p90 over timed runs after warm-up).
 */
import { readFileSync } from 'node:fs';
import type * as Ort from 'onnxruntime-node';
import * as tf from '../base/tf.js';
import { MclipError } from '../errors.js';
import type { CLIP } from '../base/model/clip.js';
import { decodeModel, encodeModel } from './onnx-proto.js';
import { mulberry32, type Rng } from '../base/random.js';

type OrtModule = typeof Ort;
let ortModule: OrtModule | null = null;

async function ort(): Promise<OrtModule> {
  if (!ortModule) {
    try {
      ortModule = (await import('onnxruntime-node')) as OrtModule;
    } catch (e) {
      throw new MclipError(`onnxruntime-node could not be loaded (${(e as Error).message})`);
    }
  }
  return ortModule;
}

/** mulberry32 seeded with `seed` (a zero state is replaced by a fixed odd constant). */
function rng(seed: number): Rng {
  return mulberry32(seed >>> 0 || 0x9e3779b9);
}

/** Uniform [0, 1) images, NCHW [n, 3, h, w]. */
export function randomImages(n: number, size: [number, number], seed = 0): Float32Array {
  const r = rng(seed * 2 + 1);
  const out = new Float32Array(n * 3 * size[0] * size[1]);
  for (let i = 0; i < out.length; i++) out[i] = r();
  return out;
}

/**
 * Token rows [n, s]: SOT (vocab − 2) at 0, random ids in [1, vocab − 2), EOT = vocab − 1 at a
 * random position ≥ 1, zeros after (the tokenizer's layout, EOT the unique row maximum).
 */
export function randomTokens(n: number, s: number, vocab: number, seed = 0): Int32Array {
  const r = rng(seed * 2 + 2);
  const out = new Int32Array(n * s);
  for (let b = 0; b < n; b++) {
    const eot = 1 + Math.floor(r() * (s - 1));
    out[b * s] = vocab - 2;
    for (let j = 1; j < eot; j++) out[b * s + j] = 1 + Math.floor(r() * Math.max(1, vocab - 3));
    out[b * s + eot] = vocab - 1;
  }
  return out;
}

function relDiff(ref: ArrayLike<number>, got: ArrayLike<number>): number {
  let md = 0;
  let mr = 0;
  for (let i = 0; i < ref.length; i++) {
    const d = Math.abs(ref[i] - got[i]);
    md = Math.max(md, Number.isNaN(d) ? Infinity : d);
    mr = Math.max(mr, Math.abs(ref[i]));
  }
  return md / Math.max(mr, 1e-30);
}

export interface VerifyOptions {
  tower: 'image' | 'text' | 'both';
  imageSize: [number, number];
  tokensDtype: 'int64' | 'int32';
  batch: number;
  tolerance: number;
  seed: number;
}

export interface VerifyReport {
  /** max|Δ| / max|ref| per output name. */
  relDiff: Record<string, number>;
  tolerance: number;
  batch: number;
}

/** Rows [n, l] zero padded to [n, s]. */
function padRows(ids: Int32Array, n: number, l: number, s: number): Int32Array {
  const out = new Int32Array(n * s);
  for (let b = 0; b < n; b++) out.set(ids.subarray(b * l, b * l + l), b * s);
  return out;
}

/**
 * The tfjs reference of a `truncate` graph fed rows of length l: the tower on the full s-slot rows with its
 * hidden states cut to the first l slots right after the embeddings (what `src/prune/truncate.ts` does with
 * l = the batch's longest row + spare pads); pooling reads the EOT index of the full rows, which is < l.
 */
function encodeTextCut(model: CLIP, ids: Int32Array, n: number, s: number, l: number): Float32Array {
  const h = model.textEncoder.positionalEmbedding.registerForwardHook((_m, _x, y) => y.slice([0, 0, 0], [-1, l, -1]));
  try {
    return tf.tidy(() => model.encodeText(tf.tensor2d(ids, [n, s], 'int32')).dataSync() as Float32Array);
  } finally {
    h.remove();
  }
}

/** The shorter length a `truncate` graph is verified at besides the full context (about half of it). */
export function shortVerifyLength(contextLength: number): number {
  return Math.max(2, Math.ceil(contextLength / 2));
}

function tokensTensor(o: OrtModule, ids: Int32Array, dims: number[], dtype: 'int64' | 'int32'): Ort.Tensor {
  return dtype === 'int64' ? new o.Tensor('int64', BigInt64Array.from(ids, (v) => BigInt(v)), dims) : new o.Tensor('int32', ids, dims);
}

/**
 * Runs the ONNX model (bytes or a path) in onnxruntime-node and the tfjs model on the same random
 * inputs; throws an MclipError naming the first output over the tolerance. A text graph with a dynamic
 * sequence axis (`truncate`, ./text-padding.ts) is checked at the full context length and, as
 * `text_features[seq L]`, on rows of a shorter length L against the tfjs tower cut to L slots.
 */
export async function verifyOnnx(model: CLIP, onnx: Uint8Array | string, opts: VerifyOptions): Promise<VerifyReport> {
  const o = await ort();
  const session = await o.InferenceSession.create(typeof onnx === 'string' ? readFileSync(onnx) : onnx, { intraOpNumThreads: 2, graphOptimizationLevel: 'all' });
  const feeds: Record<string, Ort.Tensor> = {};
  const refs: Record<string, Float32Array> = {};
  const n = opts.batch;
  try {
    if (opts.tower !== 'text') {
      const [h, w] = opts.imageSize;
      const img = randomImages(n, opts.imageSize, opts.seed);
      feeds.image = new o.Tensor('float32', img, [n, 3, h, w]);
      refs.image_features = tf.tidy(() => model.encodeImage(tf.tensor4d(img, [n, 3, h, w]).transpose([0, 2, 3, 1])).dataSync() as Float32Array);
    }
    if (opts.tower !== 'image') {
      const s = model.textEncoder.positionalEmbedding.numEmbeddings;
      const ids = randomTokens(n, s, model.textEncoder.embeddingLayer.weight.shape[0], opts.seed);
      feeds.tokens = tokensTensor(o, ids, [n, s], opts.tokensDtype);
      refs.text_features = tf.tidy(() => model.encodeText(tf.tensor2d(ids, [n, s], 'int32')).dataSync() as Float32Array);
    }
    const out: Record<string, Ort.Tensor> = { ...(await session.run(feeds)) };
    const tok = session.inputMetadata.find((m) => m.name === 'tokens');
    if (opts.tower !== 'image' && tok?.isTensor && typeof tok.shape[1] !== 'number') {
      const s = model.textEncoder.positionalEmbedding.numEmbeddings;
      const l = shortVerifyLength(s);
      const short = randomTokens(n, l, model.textEncoder.embeddingLayer.weight.shape[0], opts.seed + 1);
      const key = `text_features[seq ${l}]`;
      refs[key] = encodeTextCut(model, padRows(short, n, l, s), n, s, l);
      out[key] = (await session.run({ ...feeds, tokens: tokensTensor(o, short, [n, l], opts.tokensDtype) }, ['text_features'])).text_features;
    }
    const report: VerifyReport = { relDiff: {}, tolerance: opts.tolerance, batch: n };
    for (const [name, ref] of Object.entries(refs)) {
      const got = out[name];
      if (!got) throw new MclipError(`ONNX verification: the model has no output '${name}'`);
      if (got.data.length !== ref.length) throw new MclipError(`ONNX verification: '${name}' has ${got.data.length} values, the tfjs model ${ref.length}`);
      const e = relDiff(ref, got.data as Float32Array);
      report.relDiff[name] = e;
      if (!(e <= opts.tolerance)) {
        throw new MclipError(`ONNX verification failed: '${name}' differs from the tfjs model by ${e.toExponential(3)} (max|Δ|/max|ref|) > ${opts.tolerance}`);
      }
    }
    return report;
  } finally {
    await session.release();
  }
}

export interface LatencyOptions {
  batch?: number;
  /** Timed runs (default 30). */
  runs?: number;
  /** Untimed runs first (default 5). */
  warmup?: number;
  /** intraOpNumThreads (default 2). */
  threads?: number;
  seed?: number;
  /** Token row length on a dynamic sequence axis (a `truncate` text graph; default the context length). */
  seqLen?: number;
}

export interface LatencyResult {
  medianMs: number;
  p90Ms: number;
  meanMs: number;
  minMs: number;
  maxMs: number;
  batch: number;
  /** Untimed runs before the timed ones. */
  warmup: number;
  runs: number;
  threads: number;
  /** onnxruntime-node version, when it says. */
  version?: string;
}

/**
 * Keeps only what one output of a model needs (nodes, initializers, inputs): the image or text
 * half of a `--tower both` file. onnxruntime-node wants every graph input fed and runs the whole
 * graph, so timing one tower of a combined model needs this.
 */
export function extractTower(bytes: Uint8Array, tower: 'image' | 'text'): Uint8Array {
  const m = decodeModel(bytes);
  const g = m.graph;
  const outName = tower === 'image' ? 'image_features' : 'text_features';
  if (!(g.output ?? []).some((o) => o.name === outName)) throw new MclipError(`the model has no '${outName}' output`);
  const needed = new Set<string>([outName]);
  const nodes = g.node ?? [];
  const keep: boolean[] = new Array(nodes.length).fill(false);
  for (let i = nodes.length - 1; i >= 0; i--) {
    if (nodes[i].output.some((o) => needed.has(o))) {
      keep[i] = true;
      for (const x of nodes[i].input ?? []) needed.add(x);
    }
  }
  return encodeModel({
    ...m,
    graph: {
      ...g,
      node: nodes.filter((_, i) => keep[i]),
      initializer: (g.initializer ?? []).filter((t) => needed.has(t.name)),
      input: (g.input ?? []).filter((v) => needed.has(v.name)),
      output: (g.output ?? []).filter((v) => v.name === outName),
    },
  });
}

/** The token row length to time: the static width, or on a dynamic axis `seqLen` (default the context length). */
function tokenRowLength(dim: number | string, meta: Record<string, string>, seqLen: number | undefined, file: string): number {
  if (typeof dim === 'number') {
    if (seqLen !== undefined && seqLen !== dim) throw new MclipError(`${file}: token rows are fixed at ${dim}; a row length of ${seqLen} needs a 'truncate' export`);
    return dim;
  }
  const ctx = Number(meta['mclip.context_length']);
  const l = seqLen ?? ctx;
  if (!Number.isInteger(l) || l < 2 || (Number.isInteger(ctx) && l > ctx)) throw new MclipError(`${file}: token row length must be an integer in [2, ${ctx}], got ${l}`);
  return l;
}

/**
 * onnxruntime-node latency of one tower of an exported model (a file from `exportOnnx`; for a
 * `both` model the tower's sub-graph is extracted first, see `extractTower`). Inputs are random
 * (images in [0, 1], token rows as `randomTokens`); median, p90, mean, min and max over `runs` (≥ 1) timed runs.
 */
export async function ortLatency(onnxPath: string, tower: 'image' | 'text', opts: LatencyOptions = {}): Promise<LatencyResult> {
  const o = await ort();
  const batch = opts.batch ?? 1;
  const runs = Math.max(1, opts.runs ?? 30);
  const warmup = opts.warmup ?? 5;
  const threads = opts.threads ?? 2;
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(onnxPath);
  } catch (e) {
    throw new MclipError(`${onnxPath}: cannot read the ONNX file (${(e as Error).message})`);
  }
  const model = decodeModel(bytes);
  const meta = Object.fromEntries((model.metadataProps ?? []).map((e) => [e.key, e.value]));
  if ((model.graph.input ?? []).length > 1) bytes = extractTower(bytes, tower);
  const session = await o.InferenceSession.create(bytes, {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  try {
    const inputs = session.inputMetadata as unknown as Array<{ name: string; isTensor: boolean; type: string; shape: Array<number | string> }>;
    const byName = new Map(inputs.map((m) => [m.name, m]));
    const want = tower === 'image' ? 'image' : 'tokens';
    const outName = tower === 'image' ? 'image_features' : 'text_features';
    if (!byName.has(want)) throw new MclipError(`${onnxPath}: has no '${want}' input (inputs: ${[...byName.keys()].join(', ')})`);
    const feeds: Record<string, Ort.Tensor> = {};
    for (const m of inputs) {
      const dims = m.shape.map((d, i) => (i === 0 ? batch : Number(d)));
      if (m.name === 'tokens') dims[1] = tokenRowLength(m.shape[1], meta, opts.seqLen, onnxPath);
      if (m.name === 'image') feeds.image = new o.Tensor('float32', randomImages(batch, [dims[2], dims[3]], opts.seed ?? 0), dims);
      else if (m.name === 'tokens') {
        const vocab = Number(meta['mclip.vocab_size'] ?? 49408);
        feeds.tokens = tokensTensor(o, randomTokens(batch, dims[1], vocab, opts.seed ?? 0), dims, m.type === 'int32' ? 'int32' : 'int64');
      } else throw new MclipError(`${onnxPath}: unexpected input '${m.name}'`);
    }
    const fetches = [outName];
    for (let i = 0; i < warmup; i++) await session.run(feeds, fetches);
    const times: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t0 = process.hrtime.bigint();
      await session.run(feeds, fetches);
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    const sorted = [...times].sort((a, b) => a - b);
    const q = (p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))];
    const median = sorted.length % 2 ? sorted[(sorted.length - 1) / 2] : (sorted[sorted.length / 2 - 1] + sorted[sorted.length / 2]) / 2;
    return {
      medianMs: median,
      p90Ms: q(0.9),
      meanMs: times.reduce((a, b) => a + b, 0) / times.length,
      minMs: sorted[0],
      maxMs: sorted[sorted.length - 1],
      batch,
      warmup,
      runs,
      threads,
      version: o.env.versions?.node ?? o.env.versions?.common,
    };
  } finally {
    await session.release();
  }
}

