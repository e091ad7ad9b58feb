/**
 * Embedding engines for the gradient-free passes (evaluation, reinforcement teachers): what turns
 * image batches and token rows into (un-normalised) features. Two implementations: `TfjsEngine`
 * (the tfjs model itself, on the active backend) and `OrtEngine` (engine-ort.ts: the model's
 * verified ONNX export in onnxruntime-node, cached per checkpoint, onnx-cache.ts); `openEngine`
 * (engine-ort.ts) picks one, falling back to tfjs with a reason.
 *
 * The interface matches src/base's `TeacherEncoder` structurally, so an engine can run a
 * checkpoint teacher.
 */
import * as tf from '../base/tf.js';
import type { ClipEncoder } from './embed.js';

export type EngineName = 'ort' | 'tfjs';
export const ENGINES: readonly EngineName[] = ['ort', 'tfjs'];

/** Float image batches in [0, 1]: [n, H, W, 3] or [n, 3, H, W], row-major. */
export type ImageLayout = 'nhwc' | 'nchw';

export interface ImageTextEncoder {
  readonly name: EngineName;
  /** What runs, for the engine line (package, version, threads). */
  readonly description: string;
  /** The image layout it takes without a copy (the other one is accepted too). */
  readonly layout: ImageLayout;
  /** Images at the model's size → features [n, D] (not normalised). */
  encodeImages(pixels: Float32Array, n: number, layout: ImageLayout): Promise<Float32Array>;
  /** int32 token rows [n, contextLength] → features [n, D] (not normalised). */
  encodeTexts(tokens: Int32Array, n: number): Promise<Float32Array>;
  /** Releases what the engine owns (never the tfjs model it was made from). */
  dispose(): Promise<void>;
}

/** True for an engine (as opposed to a bare tfjs model). */
export function isEngine(x: ClipEncoder | ImageTextEncoder): x is ImageTextEncoder {
  return 'encodeImages' in x && 'encodeTexts' in x;
}

/** [n, H, W, C] → [n, C, H, W] (a copy). */
export function nhwcToNchw(x: Float32Array, n: number, h: number, w: number, c = 3): Float32Array {
  const out = new Float32Array(x.length);
  const hw = h * w;
  for (let b = 0; b < n; b++) {
    const o = b * hw * c;
    for (let p = 0; p < hw; p++) for (let k = 0; k < c; k++) out[o + k * hw + p] = x[o + p * c + k];
  }
  return out;
}

/** [n, C, H, W] → [n, H, W, C] (a copy). */
export function nchwToNhwc(x: Float32Array, n: number, h: number, w: number, c = 3): Float32Array {
  const out = new Float32Array(x.length);
  const hw = h * w;
  for (let b = 0; b < n; b++) {
    const o = b * hw * c;
    for (let p = 0; p < hw; p++) for (let k = 0; k < c; k++) out[o + p * c + k] = x[o + k * hw + p];
  }
  return out;
}

/** Checks that `pixels` holds n images of h×w×3. */
export function checkPixels(pixels: Float32Array, n: number, h: number, w: number): void {
  if (pixels.length !== n * 3 * h * w) throw new Error(`expected ${n}×3×${h}×${w} = ${n * 3 * h * w} pixel values, got ${pixels.length}`);
}

/** The tfjs model as an engine (today's path); the model stays owned by the caller. */
export class TfjsEngine implements ImageTextEncoder {
  readonly name = 'tfjs';
  readonly layout = 'nhwc';
  constructor(
    readonly model: ClipEncoder,
    /** Input H×W and token row width. */
    readonly shape: { imageSize: [number, number]; contextLength: number },
    readonly description: string,
  ) {}

  /** A fused CLIP model's engine; `description` e.g. the backend. */
  static of(model: ClipEncoder & { cfg: { image: { imageSize: number }; text: { contextLength: number } } }, description = `tfjs ${tf.getBackend()}`): TfjsEngine {
    const s = model.cfg.image.imageSize;
    return new TfjsEngine(model, { imageSize: [s, s], contextLength: model.cfg.text.contextLength }, description);
  }

  async encodeImages(pixels: Float32Array, n: number, layout: ImageLayout): Promise<Float32Array> {
    const [h, w] = this.shape.imageSize;
    checkPixels(pixels, n, h, w);
    const px = layout === 'nhwc' ? pixels : nchwToNhwc(pixels, n, h, w);
    const y = tf.tidy(() => this.model.encodeImage(tf.tensor4d(px, [n, h, w, 3])));
    try {
      return (await y.data()) as Float32Array;
    } finally {
      y.dispose();
    }
  }

  async encodeTexts(tokens: Int32Array, n: number): Promise<Float32Array> {
    const s = this.shape.contextLength;
    if (tokens.length !== n * s) throw new Error(`expected ${n}×${s} token ids, got ${tokens.length}`);
    const y = tf.tidy(() => this.model.encodeText(tf.tensor2d(tokens, [n, s], 'int32')));
    try {
      return (await y.data()) as Float32Array;
    } finally {
      y.dispose();
    }
  }

  async dispose(): Promise<void> {}
}
