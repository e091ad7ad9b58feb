/**
 * Encoder latency on the active TF.js backend (methods.md §6 "latency"): fixed input sizes,
 * warm-up runs, then ≥ 30 timed runs, each ending when the output has been read back
 * (`await data()`), so asynchronous backends are synchronised. Inputs are created once, outside
 * the timed region; preprocessing and tokenisation are not included. Time the fused
 * (reparameterised) model. ONNX Runtime numbers are filled in by the export module (`ort`).
 */
import * as tf from '../base/tf.js';
import { currentBackend } from '../base/backend/index.js';
import type { ClipEncoder } from './embed.js';

export interface LatencyStats {
  batch: number;
  warmup: number;
  runs: number;
  /** Per forward pass of the whole batch, milliseconds. */
  medianMs: number;
  p90Ms: number;
  meanMs: number;
  minMs: number;
  maxMs: number;
}

/** b1: batch 1; bN: the larger batch (default 8). */
export interface TowerLatency {
  b1: LatencyStats;
  bN: LatencyStats;
}

export interface EngineLatency {
  image: TowerLatency;
  text: TowerLatency;
}

export interface TfjsLatency extends EngineLatency {
  /** tf.getBackend() at measuring time. */
  backend: string;
  /** The tfjs package of the backend, when initBackend chose it. */
  package?: string;
  threads: number;
}

/** Filled by the ONNX Runtime exporter (src/export); every field optional. */
export interface OrtLatency {
  image?: Partial<TowerLatency>;
  text?: Partial<TowerLatency>;
  /** Execution provider, e.g. 'cpu'. */
  provider?: string;
  threads?: number;
  /** ORT version. */
  version?: string;
}

export interface LatencyRow {
  tfjs: TfjsLatency;
  ort?: OrtLatency;
}

/** q-quantile (0..1) of sorted values, linear interpolation (numpy's default). */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/** Summary of run times (ms). */
export function summarize(samplesMs: readonly number[], batch: number, warmup: number): LatencyStats {
  const s = [...samplesMs].sort((a, b) => a - b);
  const mean = s.reduce((a, b) => a + b, 0) / Math.max(1, s.length);
  return { batch, warmup, runs: s.length, medianMs: quantile(s, 0.5), p90Ms: quantile(s, 0.9), meanMs: mean, minMs: s[0] ?? NaN, maxMs: s[s.length - 1] ?? NaN };
}

export interface TimeOptions {
  /** Untimed runs first (default 5). */
  warmup?: number;
  /** Timed runs (default 30, at least 1). */
  runs?: number;
}

/**
 * Times `fn` (which returns fresh tensors; they are read back and disposed each run).
 * `batch` is only recorded in the result.
 */
export async function timeFn(fn: () => tf.Tensor | tf.Tensor[], opts: TimeOptions & { batch?: number } = {}): Promise<LatencyStats> {
  const warmup = Math.max(0, opts.warmup ?? 5);
  const runs = Math.max(1, opts.runs ?? 30);
  const once = async (): Promise<number> => {
    const t0 = performance.now();
    const out = fn();
    const list = Array.isArray(out) ? out : [out];
    try {
      for (const t of list) await t.data();
      return performance.now() - t0;
    } finally {
      tf.dispose(list);
    }
  };
  for (let i = 0; i < warmup; i++) await once();
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) samples.push(await once());
  return summarize(samples, opts.batch ?? 1, warmup);
}

export interface ModelLatencyOptions extends TimeOptions {
  /** Image side (default: the model config's image size, else 256). */
  imageSize?: number;
  /** Text positions (default 77). */
  contextLength?: number;
  /** The larger batch (default 8). */
  batch?: number;
}

/** Median / p90 of image and text encoding at batch 1 and `batch` on the current tfjs backend. */
export async function measureLatency(model: ClipEncoder & { cfg?: { image: { imageSize: number }; text: { contextLength: number } } }, opts: ModelLatencyOptions = {}): Promise<TfjsLatency> {
  const s = opts.imageSize ?? model.cfg?.image.imageSize ?? 256;
  const ctx = opts.contextLength ?? model.cfg?.text.contextLength ?? 77;
  const big = Math.max(1, opts.batch ?? 8);
  const image = async (b: number): Promise<LatencyStats> => {
    const x = tf.randomUniform([b, s, s, 3], 0, 1, 'float32', 0);
    try {
      return await timeFn(() => tf.tidy(() => model.encodeImage(x)), { ...opts, batch: b });
    } finally {
      x.dispose();
    }
  };
  const text = async (b: number): Promise<LatencyStats> => {
    // SOT, a few word ids, EOT (the row's max id) and zero padding; all positions are processed anyway.
    const ids = new Int32Array(b * ctx);
    for (let r = 0; r < b; r++) {
      ids[r * ctx] = 1;
      for (let j = 1; j < Math.min(8, ctx - 1); j++) ids[r * ctx + j] = 3 + ((r + j) % 5);
      ids[r * ctx + Math.min(8, ctx - 1)] = 9;
    }
    const t = tf.tensor2d(ids, [b, ctx], 'int32');
    try {
      return await timeFn(() => tf.tidy(() => model.encodeText(t)), { ...opts, batch: b });
    } finally {
      t.dispose();
    }
  };
  const info = currentBackend();
  const backend = tf.getBackend();
  return {
    backend,
    package: info?.name === backend ? info.package : undefined,
    threads: info?.name === backend ? info.threads : 1,
    image: { b1: await image(1), bN: await image(big) },
    text: { b1: await text(1), bN: await text(big) },
  };
}
