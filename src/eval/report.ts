/**
 * The evaluation record of one model (`EvalRow`), metric accessors shared by the table and the
 * plot, and the JSON report (written atomically: temp file + rename).
 */
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { LatencyRow, LatencyStats } from './latency.js';
import type { RecallAtK } from './retrieval.js';
import type { SplitBaselines } from './baselines.js';

export interface EvalRow {
  name: string;
  /** Trainable parameters (counts, not millions). */
  params: { image: number; text: number; total: number };
  /**
   * MACs per image / per text at the full input (counts, not G); `textPresent`: mean text MACs
   * when only the tokens actually present in the evaluated texts are processed.
   */
  macs: {
    image: number;
    text: number;
    textPresent?: number;
    /**
     * Only for a model run with text-token reducers (`--text-padding`, `--prune-layers`, `--merge-layers`): its
     * mean text MACs per caption measured with the reducers in place — the work it does, which the table
     * shows (marked *) and the Δ column compares, instead of the full-context `text`.
     */
    textReduced?: number;
  };
  latency?: LatencyRow;
  /** Fractions in [0, 1]. */
  zeroShot?: { top1: number; top5: number };
  retrieval?: { i2t: RecallAtK; t2i: RecallAtK };
}

export type ReportMeta = Record<string, unknown>;

export interface EvalReport {
  format: 'mclip-eval';
  version: 1;
  createdAt: string;
  meta: ReportMeta;
  /** Chance and majority-class accuracy of the evaluated split (absent when not given). */
  baselines?: SplitBaselines;
  rows: EvalRow[];
}

export type XMetric = 'latency' | 'macs' | 'params';
export type YMetric = 'top1' | 'top5' | 'i2tR1' | 't2iR1' | 'meanR1';

export interface LatencyChoice {
  /** Default 'tfjs'. */
  engine?: 'tfjs' | 'ort';
  /** 'sum' = image + text (as MobileCLIP's "img + txt"), default. */
  tower?: 'image' | 'text' | 'sum';
  /** Default 'b1'. */
  batch?: 'b1' | 'bN';
}

/** The chosen engine's image and text stats at the chosen batch (either may be missing). */
function chosenStats(row: EvalRow, c: LatencyChoice): { image?: LatencyStats; text?: LatencyStats } {
  const eng = c.engine === 'ort' ? row.latency?.ort : row.latency?.tfjs;
  const b = c.batch ?? 'b1';
  return { image: eng?.image?.[b], text: eng?.text?.[b] };
}

/** `f` of the chosen tower(s): one tower's value, or the sum of both (undefined when a needed one is missing). */
function perTower(row: EvalRow, c: LatencyChoice, f: (s: LatencyStats) => number): number | undefined {
  const { image, text } = chosenStats(row, c);
  const im = image ? f(image) : undefined;
  const tx = text ? f(text) : undefined;
  switch (c.tower ?? 'sum') {
    case 'image':
      return im;
    case 'text':
      return tx;
    default:
      return im != null && tx != null ? im + tx : undefined;
  }
}

/** Median latency (ms) of the chosen engine/tower/batch, or undefined when not measured. */
export function latencyMs(row: EvalRow, c: LatencyChoice = {}): number | undefined {
  return perTower(row, c, (s) => s.medianMs);
}

/**
 * The run-to-run spread (ms) of `latencyMs`: p90 − median of each timed tower, summed for
 * image + text (a conservative bound: the two towers are timed separately). Undefined when not measured.
 */
export function latencySpreadMs(row: EvalRow, c: LatencyChoice = {}): number | undefined {
  return perTower(row, c, (s) => Math.max(0, s.p90Ms - s.medianMs));
}

function distinct(values: Array<string | undefined>): string {
  return [...new Set(values.filter((v): v is string => v !== undefined))].join(' / ');
}

/**
 * What `latencyMs(row, c)` measures, as an axis label: "latency (ms, median): ORT onnxruntime-node
 * 1.30.0 CPU (2 threads), batch 1, image + text". Engine and batch details come from the rows.
 */
export function describeLatency(rows: readonly EvalRow[], c: LatencyChoice = {}): string {
  const threads = (n: number) => `${n} thread${n === 1 ? '' : 's'}`;
  const engines = rows.map((r): string | undefined => {
    if (c.engine === 'ort') {
      const o = r.latency?.ort;
      return o ? `ORT onnxruntime-node${o.version ? ` ${o.version}` : ''} ${(o.provider ?? 'cpu').toUpperCase()}${o.threads ? ` (${threads(o.threads)})` : ''}` : undefined;
    }
    const t = r.latency?.tfjs;
    return t ? `tfjs ${t.backend} (${t.package && t.package !== t.backend ? `${t.package}, ` : ''}${threads(t.threads)})` : undefined;
  });
  const batches = rows.map((r): string | undefined => {
    const s = chosenStats(r, c);
    const st = s.image ?? s.text;
    return st ? String(st.batch) : undefined;
  });
  const engine = distinct(engines) || (c.engine === 'ort' ? 'ORT' : 'tfjs');
  const batch = `batch ${distinct(batches) || ((c.batch ?? 'b1') === 'b1' ? '1' : 'N')}`;
  const tower = { image: 'image', text: 'text', sum: 'image + text' }[c.tower ?? 'sum'];
  return `latency (ms, median): ${engine}, ${batch}, ${tower}`;
}

/** x value: latency in ms, MACs in G (image + text), params in M (total). */
export function xValue(row: EvalRow, x: XMetric, lat?: LatencyChoice): number | undefined {
  switch (x) {
    case 'latency':
      return latencyMs(row, lat);
    case 'macs':
      return (row.macs.image + row.macs.text) / 1e9;
    case 'params':
      return row.params.total / 1e6;
  }
}

/** y value as a fraction in [0, 1], or undefined when not evaluated. */
export function yValue(row: EvalRow, y: YMetric): number | undefined {
  switch (y) {
    case 'top1':
      return row.zeroShot?.top1;
    case 'top5':
      return row.zeroShot?.top5;
    case 'i2tR1':
      return row.retrieval?.i2t.r1;
    case 't2iR1':
      return row.retrieval?.t2i.r1;
    case 'meanR1':
      return row.retrieval ? (row.retrieval.i2t.r1 + row.retrieval.t2i.r1) / 2 : undefined;
  }
}

/**
 * Writes `{format, version, createdAt, meta, baselines?, rows}` as JSON via a temp file and a
 * rename. Non-finite numbers are written as null.
 */
export function writeReport(path: string, rows: readonly EvalRow[], meta: ReportMeta = {}, baselines?: SplitBaselines): EvalReport {
  const report: EvalReport = { format: 'mclip-eval', version: 1, createdAt: new Date().toISOString(), meta, ...(baselines ? { baselines } : {}), rows: [...rows] };
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}-${Date.now().toString(36)}`;
  try {
    writeFileSync(tmp, JSON.stringify(report, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2) + '\n');
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  return report;
}
