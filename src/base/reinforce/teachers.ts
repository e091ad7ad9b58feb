/**
 * Teachers for dataset reinforcement (methods.md §2.3–2.4): models that embed augmented images
 * and captions; their L2-normalised features are stored per sample.
 *
 * Two kinds, chosen by the file extension:
 *  - our checkpoints (`.safetensors`, `.pt`, `.pth`, `.bin`, `.ckpt`) via `loadModel`, run fused
 *    (reparameterised) in TensorFlow.js; each sees the augmented images normalised by its own
 *    `preprocessFor(cfg)` (OpenAI mean/std for MobileCLIP2-S3/S4/L-14, none otherwise);
 *  - ONNX models (`.onnx`) run with onnxruntime-node. Expected interface (what `mclip export
 *    --tower both` writes):
 *      inputs  `image`  float32 [N, 3, H, W] RGB in [0, 1] (NCHW, no mean/std normalisation)
 *              `tokens` int64 or int32 [N, S] token ids (S = 77 unless the shape says otherwise)
 *      outputs `image_features` float32 [N, D], `text_features` float32 [N, D] (normalised here)
 *    H×W is read from the `image` input when static, else the `imageSize` option (--image-size).
 *    onnxruntime wants every graph input fed, so the unused tower gets a one-row dummy input.
 *
 * A checkpoint teacher can run in another engine than TensorFlow.js: `TeacherOptions.encoder` is
 * handed the loaded (fused) model and its path and may return a `TeacherEncoder` that stands in
 * for it (the CLI wires in the model's cached, verified ONNX export in onnxruntime; src/base knows
 * neither src/eval nor src/export).
 */
import { readFileSync } from 'node:fs';
import { basename, extname } from 'node:path';
import type * as Ort from 'onnxruntime-node';
import * as tf from '../tf.js';
import { MclipError } from '../../errors.js';
import { loadModel } from '../model/checkpoint.js';
import { l2normalize, type CLIP } from '../model/clip.js';
import type { RgbImage } from '../data/augment.js';
import { preprocessFor } from '../model/preprocess-table.js';
import { IDENTITY_PREPROCESS, type PreprocessSpec } from '../preprocess/spec.js';

export interface Teacher {
  /** name stored in `teachers.json` (the file name) */
  readonly name: string;
  /** what runs it: 'tfjs', 'ort', or the name of an injected `TeacherEncoder` (absent: tfjs) */
  readonly engine?: string;
  /** embedding width D */
  readonly dim: number;
  /** teacher inverse temperature 1/τ stored with the embeddings */
  readonly logitScale: number;
  /** square input size the augmented images are rendered at */
  readonly imageSize: number;
  /** token row width */
  readonly contextLength: number;
  /** the normalisation its image input gets after the [0, 1] conversion (absent: none) */
  readonly preprocess?: PreprocessSpec;
  /** text vocabulary size when known (checked against the tokenizer) */
  readonly vocabSize?: number;
  /** L2-normalised features of `images` (all `imageSize`²), row-major [n, dim] */
  embedImages(images: readonly RgbImage[]): Promise<Float32Array>;
  /** L2-normalised features of token rows [n, contextLength], row-major [n, dim] */
  embedTokens(tokens: Int32Array, n: number): Promise<Float32Array>;
  dispose(): Promise<void>;
}

/** Image layouts of a float batch in [0, 1]: [n, H, W, 3] or [n, 3, H, W]. */
export type PixelLayout = 'nhwc' | 'nchw';

/**
 * An inference engine standing in for a checkpoint teacher's tfjs model: un-normalised features
 * (the teacher normalises them). Images are square at the model's image size.
 */
export interface TeacherEncoder {
  /** short engine name for the log, e.g. 'ort' */
  readonly name: string;
  /** the image layout it takes without a copy (the other one is accepted too) */
  readonly layout: PixelLayout;
  /** true when it no longer needs the tfjs model (e.g. an ONNX session): the teacher frees the model at once */
  readonly standalone?: boolean;
  /** images in [0, 1], row-major in `layout` → features [n, D] */
  encodeImages(pixels: Float32Array, n: number, layout: PixelLayout): Promise<Float32Array>;
  /** int32 token rows [n, contextLength] → features [n, D] */
  encodeTexts(tokens: Int32Array, n: number): Promise<Float32Array>;
  dispose(): Promise<void>;
}

/** Given a checkpoint teacher's fused model and its file: an encoder to run it, or null for tfjs. */
export type TeacherEncoderFactory = (model: CLIP, path: string) => Promise<TeacherEncoder | null>;

export interface TeacherOptions {
  logitScale?: number;
  /** input size for ONNX models whose `image` input has no static H×W (default 224) */
  imageSize?: number;
  /** checkpoint teachers: the engine that runs the model instead of tfjs (see `TeacherEncoder`) */
  encoder?: TeacherEncoderFactory;
}

export const CHECKPOINT_EXTENSIONS = ['.safetensors', '.pt', '.pth', '.bin', '.ckpt'];

/** Loads a checkpoint (fused) or an ONNX model as a teacher. */
export async function loadTeacher(path: string, opts: TeacherOptions = {}): Promise<Teacher> {
  const ext = extname(path).toLowerCase();
  if (ext === '.onnx') return OnnxTeacher.load(path, opts);
  if (CHECKPOINT_EXTENSIONS.includes(ext)) return CheckpointTeacher.load(path, opts);
  throw new MclipError(`teacher ${path}: unknown extension '${ext}' (expected .onnx or a checkpoint: ${CHECKPOINT_EXTENSIONS.join(', ')})`);
}

/** Row-wise L2 normalisation in place (eps 1e-12, as F.normalize). */
export function normalizeRows(x: Float32Array, dim: number): Float32Array {
  for (let r = 0; r < x.length / dim; r++) {
    let s = 0;
    for (let k = 0; k < dim; k++) s += x[r * dim + k] * x[r * dim + k];
    const inv = 1 / Math.max(Math.sqrt(s), 1e-12);
    for (let k = 0; k < dim; k++) x[r * dim + k] *= inv;
  }
  return x;
}

/** Images → float32 in [0, 1] (then `spec`'s per-channel `(x − mean) / std`), NHWC (`nchw` false) or NCHW. */
export function imagesToFloat(images: readonly RgbImage[], size: number, nchw: boolean, spec: PreprocessSpec = IDENTITY_PREPROCESS): Float32Array {
  const hw = size * size;
  const { mean, std } = spec;
  const out = new Float32Array(images.length * 3 * hw);
  images.forEach((img, b) => {
    if (img.width !== size || img.height !== size) throw new MclipError(`teacher input image ${b} is ${img.width}×${img.height}, expected ${size}×${size}`);
    const base = b * 3 * hw;
    for (let p = 0; p < hw; p++) {
      for (let c = 0; c < 3; c++) {
        const v = (img.data[p * 3 + c] / 255 - mean[c]) / std[c];
        out[nchw ? base + c * hw + p : base + p * 3 + c] = v;
      }
    }
  });
  return out;
}

class CheckpointTeacher implements Teacher {
  readonly dim: number;
  readonly imageSize: number;
  readonly contextLength: number;
  readonly vocabSize: number;
  readonly engine: string;
  readonly preprocess: PreprocessSpec;
  /** the tfjs model, unless a standalone encoder runs the teacher */
  private tfModel: CLIP | null = null;
  private constructor(
    readonly name: string,
    readonly logitScale: number,
    model: CLIP,
    private readonly encoder: TeacherEncoder | null,
  ) {
    this.dim = model.cfg.embedDim;
    this.imageSize = model.cfg.image.imageSize;
    this.contextLength = model.cfg.text.contextLength;
    this.vocabSize = model.cfg.text.vocabSize;
    this.preprocess = preprocessFor(model.cfg);
    this.engine = encoder?.name ?? 'tfjs';
    if (encoder?.standalone) model.dispose();
    else this.tfModel = model;
  }

  private get model(): CLIP {
    if (!this.tfModel) throw new MclipError(`teacher ${this.name}: its tfjs model was released (the ${this.engine} engine runs it)`);
    return this.tfModel;
  }

  static async load(path: string, opts: TeacherOptions): Promise<CheckpointTeacher> {
    const { model } = await loadModel(path, { fused: true });
    let encoder: TeacherEncoder | null = null;
    try {
      encoder = opts.encoder ? await opts.encoder(model, path) : null;
    } catch (e) {
      model.dispose();
      throw e;
    }
    return new CheckpointTeacher(basename(path), opts.logitScale ?? 100, model, encoder);
  }

  private checked(f: Float32Array, n: number, what: string): Float32Array {
    if (f.length !== n * this.dim) throw new MclipError(`teacher ${this.name}: the ${this.engine} engine gave ${f.length} ${what} values for ${n} rows, expected ${n}×${this.dim}`);
    return normalizeRows(f, this.dim);
  }

  async embedImages(images: readonly RgbImage[]): Promise<Float32Array> {
    const s = this.imageSize;
    if (this.encoder) {
      const layout = this.encoder.layout;
      return this.checked(await this.encoder.encodeImages(imagesToFloat(images, s, layout === 'nchw', this.preprocess), images.length, layout), images.length, 'image');
    }
    const px = imagesToFloat(images, s, false, this.preprocess);
    const y = tf.tidy(() => l2normalize(this.model.encodeImage(tf.tensor4d(px, [images.length, s, s, 3]))));
    try {
      return (await y.data()) as Float32Array;
    } finally {
      y.dispose();
    }
  }

  async embedTokens(tokens: Int32Array, n: number): Promise<Float32Array> {
    if (this.encoder) return this.checked(await this.encoder.encodeTexts(tokens, n), n, 'text');
    const y = tf.tidy(() => l2normalize(this.model.encodeText(tf.tensor2d(tokens, [n, this.contextLength], 'int32'))));
    try {
      return (await y.data()) as Float32Array;
    } finally {
      y.dispose();
    }
  }

  async dispose(): Promise<void> {
    try {
      await this.encoder?.dispose();
    } finally {
      this.tfModel?.dispose();
      this.tfModel = null;
    }
  }
}

type OrtModule = typeof Ort;

async function ortModule(): Promise<OrtModule> {
  try {
    return (await import('onnxruntime-node')) as OrtModule;
  } catch (e) {
    throw new MclipError(`onnxruntime-node could not be loaded (${(e as Error).message})`);
  }
}

function tensorMeta(list: readonly Ort.InferenceSession.ValueMetadata[], name: string): Ort.InferenceSession.TensorValueMetadata | undefined {
  const m = list.find((v) => v.name === name);
  return m && m.isTensor ? m : undefined;
}

function staticDim(shape: ReadonlyArray<number | string> | undefined, i: number): number | undefined {
  const v = shape?.[i];
  return typeof v === 'number' && v > 0 ? v : undefined;
}

class OnnxTeacher implements Teacher {
  readonly engine = 'ort';
  private dimKnown: number | undefined;
  private constructor(
    readonly name: string,
    readonly logitScale: number,
    readonly imageSize: number,
    readonly contextLength: number,
    private readonly tokensType: 'int64' | 'int32',
    dim: number | undefined,
    private readonly ort: OrtModule,
    private readonly session: Ort.InferenceSession,
    private readonly path: string,
  ) {
    this.dimKnown = dim;
  }

  static async load(path: string, opts: TeacherOptions): Promise<OnnxTeacher> {
    const ort = await ortModule();
    let bytes: Uint8Array;
    try {
      bytes = readFileSync(path);
    } catch (e) {
      throw new MclipError(`teacher ${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
    }
    let session: Ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 2, graphOptimizationLevel: 'all' });
    } catch (e) {
      throw new MclipError(`teacher ${path}: onnxruntime cannot load it (${String((e as Error).message ?? e).split('\n')[0]})`);
    }
    const fail = (what: string): never => {
      void session.release();
      throw new MclipError(`teacher ${path}: ${what} (expected inputs image float32 [N,3,H,W] and tokens int64/int32 [N,77]; outputs image_features and text_features)`);
    };
    const img = tensorMeta(session.inputMetadata, 'image');
    const tok = tensorMeta(session.inputMetadata, 'tokens');
    if (!img) fail(`no tensor input 'image' (inputs: ${session.inputNames.join(', ')})`);
    if (!tok) fail(`no tensor input 'tokens' (inputs: ${session.inputNames.join(', ')})`);
    for (const o of ['image_features', 'text_features']) if (!session.outputNames.includes(o)) fail(`no output '${o}' (outputs: ${session.outputNames.join(', ')})`);
    if (img!.type !== 'float32') fail(`input 'image' is ${img!.type}`);
    if (tok!.type !== 'int64' && tok!.type !== 'int32') fail(`input 'tokens' is ${tok!.type}`);
    if (img!.shape.length !== 4 || (staticDim(img!.shape, 1) ?? 3) !== 3) fail(`input 'image' has shape [${img!.shape.join(', ')}]`);
    const h = staticDim(img!.shape, 2);
    const w = staticDim(img!.shape, 3);
    if (h !== undefined && w !== undefined && h !== w) fail(`input 'image' is ${h}×${w}; only square inputs are supported`);
    const size = h ?? w ?? opts.imageSize ?? 224;
    const ctx = staticDim(tok!.shape, 1) ?? 77;
    const out = tensorMeta(session.outputMetadata, 'image_features');
    const dim = staticDim(out?.shape, 1);
    return new OnnxTeacher(basename(path), opts.logitScale ?? 100, size, ctx, tok!.type as 'int64' | 'int32', dim, ort, session, path);
  }

  get dim(): number {
    if (this.dimKnown === undefined) throw new MclipError(`teacher ${this.path}: output width unknown before the first forward`);
    return this.dimKnown;
  }

  /** Runs once on a dummy input when the output width is symbolic. */
  async probe(): Promise<void> {
    if (this.dimKnown === undefined) await this.embedTokens(this.dummyTokens(), 1);
  }

  private dummyTokens(): Int32Array {
    const t = new Int32Array(this.contextLength);
    t[1] = 1; // argmax at 1: a valid pooled position
    return t;
  }

  private tokensTensor(ids: Int32Array, n: number): Ort.Tensor {
    const dims = [n, this.contextLength];
    return this.tokensType === 'int64' ? new this.ort.Tensor('int64', BigInt64Array.from(ids, (v) => BigInt(v)), dims) : new this.ort.Tensor('int32', ids, dims);
  }

  private async run(feeds: Record<string, Ort.Tensor>, output: 'image_features' | 'text_features', n: number): Promise<Float32Array> {
    let res: Ort.InferenceSession.OnnxValueMapType;
    try {
      res = await this.session.run(feeds);
    } catch (e) {
      throw new MclipError(`teacher ${this.path}: onnxruntime failed (${String((e as Error).message ?? e).split('\n')[0]})`);
    }
    const t = res[output];
    if (t.type !== 'float32' || t.dims.length !== 2 || t.dims[0] !== n) throw new MclipError(`teacher ${this.path}: '${output}' is ${t.type} [${t.dims.join(', ')}], expected float32 [${n}, D]`);
    const d = t.dims[1];
    if (this.dimKnown === undefined) this.dimKnown = d;
    else if (d !== this.dimKnown) throw new MclipError(`teacher ${this.path}: '${output}' has width ${d}, expected ${this.dimKnown}`);
    const data = new Float32Array(t.data as Float32Array); // copy: the output buffer belongs to ort
    for (const v of Object.values(res)) v.dispose?.();
    return normalizeRows(data, d);
  }

  async embedImages(images: readonly RgbImage[]): Promise<Float32Array> {
    const s = this.imageSize;
    const feeds = {
      image: new this.ort.Tensor('float32', imagesToFloat(images, s, true), [images.length, 3, s, s]),
      tokens: this.tokensTensor(this.dummyTokens(), 1),
    };
    return this.run(feeds, 'image_features', images.length);
  }

  async embedTokens(tokens: Int32Array, n: number): Promise<Float32Array> {
    const s = this.imageSize;
    const feeds = {
      image: new this.ort.Tensor('float32', new Float32Array(3 * s * s), [1, 3, s, s]),
      tokens: this.tokensTensor(tokens, n),
    };
    return this.run(feeds, 'text_features', n);
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}

/** Loads a teacher and makes sure its width is known (ONNX models with a symbolic width run once). */
export async function openTeacher(path: string, opts: TeacherOptions = {}): Promise<Teacher> {
  const t = await loadTeacher(path, opts);
  if (t instanceof OnnxTeacher) await t.probe();
  return t;
}
