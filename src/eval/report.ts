/**
 * The evaluation record of one model (`EvalRow`), metric accessors shared by the table and the
 * plot, and the JSON report (written atomically: temp file + rename).
 */
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { LatencyRow } from './latency.js';
import type { RecallAtK } from './retrieval.js';

export interface EvalRow {
  name: string;
  /** Trainable parameters (counts, not millions). */
  params: { image: number; text: number; total: number };
  /**
   * MACs per image / per text at the full input (counts, not G); `textPresent`: mean text MACs
   * when only the tokens actually present in the evaluated texts are processed.
   */
  macs: { image: number; text: number; textPresent?: number };
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

/** Median latency (ms) of the chosen engine/tower/batch, or undefined when not measured. */
export function latencyMs(row: EvalRow, c: LatencyChoice = {}): number | undefined {
  const eng = c.engine === 'ort' ? row.latency?.ort : row.latency?.tfjs;
  const b = c.batch ?? 'b1';
  const im = eng?.image?.[b]?.medianMs;
  const tx = eng?.text?.[b]?.medianMs;
  switch (c.tower ?? 'sum') {
    case 'image':
      return im;
    case 'text':
      return tx;
    default:
      return im != null && tx != null ? im + tx : undefined;
  }
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

/** Writes `{format, version, createdAt, meta, rows}` as JSON via a temp file and a rename. */
export function writeReport(path: string, rows: readonly EvalRow[], meta: ReportMeta = {}): EvalReport {
  const report: EvalReport = { format: 'mclip-eval', version: 1, createdAt: new Date().toISOString(), meta, rows: [...rows] };
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
