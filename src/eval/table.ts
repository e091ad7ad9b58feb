/**
 * The comparison table (cli-table3, no colours): one row per model with parameters, MACs,
 * latency (tfjs, ORT), zero-shot top-1/top-5, retrieval R@1 and the change against the first
 * (baseline) row; then, when given, two reference rows of the split (chance, majority class)
 * with the accuracies a model must beat. Missing values print as '—'; cells that do not apply
 * to a reference row stay empty. A model run with text-token reducers shows the text MACs measured with
 * them (mean per caption of the split), marked with *; the table then ends with the line `TABLE_NOTE_REDUCED`.
 */
import Table from 'cli-table3';
import { latencyMs, type EvalRow } from './report.js';
import type { SplitBaselines } from './baselines.js';

const NA = '—';

function fmt(v: number | undefined, digits: number, scale = 1): string {
  return v == null || !Number.isFinite(v) ? NA : (v * scale).toFixed(digits);
}

function pair(a: number | undefined, b: number | undefined, digits: number, scale = 1): string {
  return a == null && b == null ? NA : `${fmt(a, digits, scale)} / ${fmt(b, digits, scale)}`;
}

/** Signed change in percentage points between two fractions. */
function dpp(v: number | undefined, base: number | undefined): string | null {
  if (v == null || base == null || !Number.isFinite(v) || !Number.isFinite(base)) return null;
  const d = (v - base) * 100;
  return `${d >= 0 ? '+' : '−'}${Math.abs(d).toFixed(1)}pp`;
}

/** Signed relative change in percent. */
function dpct(v: number | undefined, base: number | undefined): string | null {
  if (v == null || base == null || !Number.isFinite(v) || !Number.isFinite(base) || base === 0) return null;
  const d = (v / base - 1) * 100;
  return `${d >= 0 ? '+' : '−'}${Math.abs(d).toFixed(0)}%`;
}

/** The Δ cell of `row` against `base`: accuracy in pp, cost in % (e.g. "top1 −1.2pp · tfjs −20% · MACs −35%"). */
export function deltaText(row: EvalRow, base: EvalRow): string {
  const parts: Array<[string, string | null]> = [
    ['top1', dpp(row.zeroShot?.top1, base.zeroShot?.top1)],
    ['R@1', dpp(meanR1(row), meanR1(base))],
    ['tfjs', dpct(latencyMs(row), latencyMs(base))],
    ['ORT', dpct(latencyMs(row, { engine: 'ort' }), latencyMs(base, { engine: 'ort' }))],
    ['MACs', dpct(row.macs.image + spentText(row), base.macs.image + spentText(base))],
    ['params', dpct(row.params.total, base.params.total)],
  ];
  const s = parts.filter(([, v]) => v != null).map(([k, v]) => `${k} ${v}`);
  return s.length > 0 ? s.join(' · ') : NA;
}

/** The text MACs a row's model spends per caption: measured with its token reducers, else the full context's. */
function spentText(r: EvalRow): number {
  return r.macs.textReduced ?? r.macs.text;
}

function meanR1(r: EvalRow): number | undefined {
  return r.retrieval ? (r.retrieval.i2t.r1 + r.retrieval.t2i.r1) / 2 : undefined;
}

export const TABLE_HEAD = [
  'model',
  'params M\nimg / txt',
  'GMACs\nimg / txt',
  'tfjs ms b1\nimg / txt',
  'ORT ms b1\nimg / txt',
  'ZS top-1\n%',
  'ZS top-5\n%',
  'R@1 %\ni2t / t2i',
  'Δ vs baseline',
] as const;

/** The line printed under a table whose rows include a `*` (text MACs measured with the reducers). */
export const TABLE_NOTE_REDUCED = '* text MACs per caption measured with the model’s text-token reducers (mean over the split’s captions); the other rows count the full context';

export interface TableOptions {
  /** Chance / majority-class rows under the models. */
  baselines?: SplitBaselines;
}

/** The two reference rows: chance (uniform guess) and majority class. */
export function baselineRows(b: SplitBaselines): string[][] {
  const pct = (v: number | undefined) => fmt(v, 1, 100);
  const chanceR1 = b.chance.i2tR1 == null && b.chance.t2iR1 == null ? NA : pair(b.chance.i2tR1, b.chance.t2iR1, 1, 100);
  return [
    ['chance', '', '', '', '', pct(b.chance.top1), pct(b.chance.top5), chanceR1, `reference: uniform guess over ${b.classes} classes`],
    ['majority class', '', '', '', '', pct(b.majority.top1), pct(b.majority.top5), NA, `reference: always '${b.majority.class}' (${b.majority.count} of ${b.samples} samples)`],
  ];
}

/** Renders the rows as a text table; the first row is the baseline of the Δ column. */
export function renderTable(rows: readonly EvalRow[], opts: TableOptions = {}): string {
  const t = new Table({ head: [...TABLE_HEAD], style: { head: [], border: [] } });
  const base = rows[0];
  for (const r of rows) {
    const tf = r.latency?.tfjs;
    const ort = r.latency?.ort;
    t.push([
      r.name,
      pair(r.params.image, r.params.text, 2, 1e-6),
      r.macs.textReduced != null ? `${pair(r.macs.image, r.macs.textReduced, 3, 1e-9)}*` : pair(r.macs.image, r.macs.text, 3, 1e-9),
      pair(tf?.image.b1.medianMs, tf?.text.b1.medianMs, 2),
      pair(ort?.image?.b1?.medianMs, ort?.text?.b1?.medianMs, 2),
      fmt(r.zeroShot?.top1, 1, 100),
      fmt(r.zeroShot?.top5, 1, 100),
      pair(r.retrieval?.i2t.r1, r.retrieval?.t2i.r1, 1, 100),
      r === base ? 'baseline' : deltaText(r, base),
    ]);
  }
  if (opts.baselines) for (const r of baselineRows(opts.baselines)) t.push(r);
  return rows.some((r) => r.macs.textReduced != null) ? `${t.toString()}\n${TABLE_NOTE_REDUCED}` : t.toString();
}
