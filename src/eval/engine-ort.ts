/**
 * The onnxruntime-node engine: a checkpoint's verified ONNX towers (onnx-cache.ts), one
 * InferenceSession per tower, and `openEngine`, which picks ORT or tfjs and falls back to tfjs
 * (with a one-line reason) when onnxruntime-node cannot load or the model cannot be exported.
 */
import type * as Ort from 'onnxruntime-node';
import type { CLIP } from '../base/model/clip.js';
import { MclipError } from '../errors.js';
import { truncateTokenRows } from '../export/index.js';
import { checkPixels, nhwcToNchw, TfjsEngine, type EngineName, type ImageLayout, type ImageTextEncoder } from './engine.js';
import { cachedOnnx, dropOnnxEntry, OnnxCacheError, type OnnxCacheEntry, type OnnxCacheOptions } from './onnx-cache.js';

export type OrtModule = typeof Ort;

/** intra-op threads of the engine's sessions (as the export's verification and latency). */
export const ORT_THREADS = 2;

function firstLine(e: unknown): string {
  const m = String(e instanceof Error ? e.message : e).split('\n')[0].trim();
  return m.length > 200 ? `${m.slice(0, 197)}...` : m;
}

/** Imports onnxruntime-node; an MclipError saying why when it cannot load. */
export async function loadOrt(): Promise<OrtModule> {
  try {
    return (await import('onnxruntime-node')) as OrtModule;
  } catch (e) {
    throw new MclipError(`onnxruntime-node could not be loaded (${firstLine(e)})`);
  }
}

function tensorInput(s: Ort.InferenceSession, name: string, file: string): Ort.InferenceSession.TensorValueMetadata {
  const m = s.inputMetadata.find((v) => v.name === name);
  if (!m || !m.isTensor) throw new MclipError(`${file}: no tensor input '${name}' (inputs: ${s.inputNames.join(', ')})`);
  return m;
}

function staticDim(shape: ReadonlyArray<number | string>, i: number, file: string, what: string): number {
  const v = shape[i];
  if (typeof v !== 'number' || !(v > 0)) throw new MclipError(`${file}: ${what} is not static ([${shape.join(', ')}])`);
  return v;
}

export interface OrtEngineOptions {
  /** intra-op threads (default ORT_THREADS). */
  threads?: number;
  /** onnxruntime-node itself (default: loadOrt()). */
  ort?: OrtModule;
  /** Width of the token rows `encodeTexts` receives; needed when the text graph's sequence axis is dynamic. */
  contextLength?: number;
}

/** Both towers of an exported model in onnxruntime-node (CPU); owns its sessions. */
export class OrtEngine implements ImageTextEncoder {
  readonly name = 'ort';
  readonly layout = 'nchw';
  /** Needs no tfjs model once open (a reinforcement teacher frees it). */
  readonly standalone = true;
  private constructor(
    private readonly ort: OrtModule,
    private readonly image: Ort.InferenceSession,
    private readonly text: Ort.InferenceSession,
    /** H×W of the `image` input. */
    readonly imageSize: [number, number],
    readonly contextLength: number,
    private readonly tokensType: 'int64' | 'int32',
    /** The text graph takes rows cut to the batch's longest (`truncate`, a dynamic sequence axis). */
    readonly truncatesText: boolean,
    readonly threads: number,
    readonly description: string,
  ) {}

  /**
   * Opens the image and text tower files (`image` → `image_features`, `tokens` → `text_features`, static H×W;
   * static S, or a dynamic sequence axis — a `truncate` export — with `opts.contextLength` the rows' width).
   */
  static async open(files: { image: string; text: string }, opts: OrtEngineOptions = {}): Promise<OrtEngine> {
    const ort = opts.ort ?? (await loadOrt());
    const threads = opts.threads ?? ORT_THREADS;
    const sessionOpts: Ort.InferenceSession.SessionOptions = { intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all' };
    const sessions: Ort.InferenceSession[] = [];
    const create = async (file: string): Promise<Ort.InferenceSession> => {
      try {
        const s = await ort.InferenceSession.create(file, sessionOpts);
        sessions.push(s);
        return s;
      } catch (e) {
        throw new MclipError(`${file}: onnxruntime cannot load it (${firstLine(e)})`);
      }
    };
    try {
      const image = await create(files.image);
      const text = await create(files.text);
      const im = tensorInput(image, 'image', files.image);
      const tok = tensorInput(text, 'tokens', files.text);
      if (!image.outputNames.includes('image_features')) throw new MclipError(`${files.image}: no output 'image_features'`);
      if (!text.outputNames.includes('text_features')) throw new MclipError(`${files.text}: no output 'text_features'`);
      if (im.type !== 'float32' || im.shape.length !== 4) throw new MclipError(`${files.image}: input 'image' is ${im.type} [${im.shape.join(', ')}], expected float32 [N, 3, H, W]`);
      if (tok.type !== 'int64' && tok.type !== 'int32') throw new MclipError(`${files.text}: input 'tokens' is ${tok.type}, expected int64 or int32`);
      const size: [number, number] = [staticDim(im.shape, 2, files.image, 'the image height'), staticDim(im.shape, 3, files.image, 'the image width')];
      const truncates = typeof tok.shape[1] === 'string';
      const width = opts.contextLength;
      if (truncates && !(width !== undefined && Number.isInteger(width) && width > 0)) {
        throw new MclipError(`${files.text}: the token axis is dynamic ('truncate' export); the engine needs the context length`);
      }
      const ctx = truncates && width !== undefined ? width : staticDim(tok.shape, 1, files.text, 'the token row width');
      const v = ort.env.versions?.node ?? ort.env.versions?.common;
      const description = `onnxruntime-node${v ? ` ${v}` : ''} CPU, ${threads} thread${threads === 1 ? '' : 's'}${truncates ? ', text truncated per batch' : ''}`;
      return new OrtEngine(ort, image, text, size, ctx, tok.type, truncates, threads, description);
    } catch (e) {
      for (const s of sessions) await s.release();
      throw e;
    }
  }

  private async run(session: Ort.InferenceSession, feeds: Record<string, Ort.Tensor>, output: string, n: number): Promise<Float32Array> {
    let res: Ort.InferenceSession.OnnxValueMapType;
    try {
      res = await session.run(feeds, [output]);
    } catch (e) {
      throw new MclipError(`onnxruntime failed (${firstLine(e)})`);
    }
    try {
      const t = res[output];
      if (t.type !== 'float32' || t.dims.length !== 2 || t.dims[0] !== n) throw new MclipError(`onnxruntime: '${output}' is ${t.type} [${t.dims.join(', ')}], expected float32 [${n}, D]`);
      return new Float32Array(t.data as Float32Array); // a copy: the output buffer belongs to ort
    } finally {
      for (const v of Object.values(res)) v.dispose?.();
    }
  }

  async encodeImages(pixels: Float32Array, n: number, layout: ImageLayout): Promise<Float32Array> {
    const [h, w] = this.imageSize;
    checkPixels(pixels, n, h, w);
    const px = layout === 'nchw' ? pixels : nhwcToNchw(pixels, n, h, w);
    return this.run(this.image, { image: new this.ort.Tensor('float32', px, [n, 3, h, w]) }, 'image_features', n);
  }

  async encodeTexts(tokens: Int32Array, n: number): Promise<Float32Array> {
    const s = this.contextLength;
    if (tokens.length !== n * s) throw new Error(`expected ${n}×${s} token ids, got ${tokens.length}`);
    // A `truncate` graph gets the batch cut to its longest row (exact for causal towers).
    const cut = this.truncatesText ? truncateTokenRows(tokens, n, s) : { ids: tokens, length: s };
    const dims = [n, cut.length];
    const t = this.tokensType === 'int64' ? new this.ort.Tensor('int64', BigInt64Array.from(cut.ids, (v) => BigInt(v)), dims) : new this.ort.Tensor('int32', cut.ids, dims);
    return this.run(this.text, { tokens: t }, 'text_features', n);
  }

  async dispose(): Promise<void> {
    try {
      await this.image.release();
    } finally {
      await this.text.release();
    }
  }
}

/** What ran, for the JSON report. */
export interface EngineReport {
  /** The engine that ran. */
  engine: EngineName;
  /** The one asked for (--engine). */
  requested: EngineName;
  /** Why tfjs ran instead of ORT. */
  fallback?: string;
  description: string;
  /** The cache entry ORT ran (a folder). */
  onnx?: string;
  /** 'hit': reused; 'created': exported and verified in this run. */
  cache?: 'hit' | 'created';
  /** max|Δ|/max|ref| of a new entry's verification, per tower. */
  verifyRelDiff?: { image: number; text: number };
}

export interface OpenEngineOptions extends OnnxCacheOptions {
  /** The checkpoint file the model was loaded from: its bytes key the ONNX cache. */
  checkpoint: string;
  threads?: number;
  /** The tfjs engine's description (e.g. the backend line's words). */
  tfjsDescription?: string;
  /** Loads onnxruntime-node (default `loadOrt`; a test can make it fail). */
  loadOrt?: () => Promise<OrtModule>;
}

export interface OpenedEngine {
  engine: ImageTextEncoder;
  /** The ORT engine's cache entry (absent for tfjs). */
  onnx?: OnnxCacheEntry;
  report: EngineReport;
  /** One line for stderr: `engine ort (…)`, `engine tfjs (…)` or `engine tfjs instead of ort: <reason>`. */
  line: string;
}

function tfjsOpened(model: CLIP, requested: EngineName, opts: OpenEngineOptions, fallback?: string): OpenedEngine {
  const engine = TfjsEngine.of(model, opts.tfjsDescription);
  const report: EngineReport = { engine: 'tfjs', requested, ...(fallback ? { fallback } : {}), description: engine.description };
  return { engine, report, line: fallback ? `engine tfjs instead of ort: ${fallback}` : `engine tfjs (${engine.description})` };
}

/**
 * The engine for `model` (fused in place; loaded from `opts.checkpoint`): 'tfjs' runs the model
 * itself; 'ort' its cached, verified ONNX export in onnxruntime-node, or tfjs with the reason in
 * `report.fallback` when onnxruntime-node cannot load or the model cannot be exported or verified.
 * The caller disposes `engine` (never the model).
 */
export async function openEngine(choice: EngineName, model: CLIP, opts: OpenEngineOptions): Promise<OpenedEngine> {
  if (choice === 'tfjs') return tfjsOpened(model, choice, opts);
  let ort: OrtModule;
  try {
    ort = await (opts.loadOrt ?? loadOrt)();
  } catch (e) {
    return tfjsOpened(model, choice, opts, firstLine(e));
  }
  let entry: OnnxCacheEntry;
  try {
    entry = await cachedOnnx(model, opts.checkpoint, opts);
  } catch (e) {
    const why = firstLine(e);
    return tfjsOpened(model, choice, opts, e instanceof OnnxCacheError ? why : `the model cannot be exported to ONNX: ${why.replace(/^export: /, '')}`);
  }
  let engine: OrtEngine;
  try {
    engine = await OrtEngine.open(entry, { ort, threads: opts.threads, contextLength: model.cfg.text.contextLength });
  } catch (e) {
    if (!entry.hit) return tfjsOpened(model, choice, opts, firstLine(e));
    // a damaged cache entry: rebuild it once
    dropOnnxEntry(entry);
    try {
      entry = await cachedOnnx(model, opts.checkpoint, opts);
      engine = await OrtEngine.open(entry, { ort, threads: opts.threads, contextLength: model.cfg.text.contextLength });
    } catch (e2) {
      return tfjsOpened(model, choice, opts, firstLine(e2));
    }
  }
  const v = entry.verify;
  const report: EngineReport = {
    engine: 'ort',
    requested: choice,
    description: engine.description,
    onnx: entry.dir,
    cache: entry.hit ? 'hit' : 'created',
    ...(v ? { verifyRelDiff: { image: Math.max(...Object.values(v.image.relDiff)), text: Math.max(...Object.values(v.text.relDiff)) } } : {}),
  };
  const how = v && report.verifyRelDiff
    ? `exported, verified (max rel. diff ${Math.max(report.verifyRelDiff.image, report.verifyRelDiff.text).toExponential(1)} ≤ 1e-4) and cached in ${entry.dir}`
    : `cached export ${entry.dir}`;
  return { engine, onnx: entry, report, line: `engine ort (${engine.description}; ${how})` };
}
