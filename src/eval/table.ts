/**
 * The comparison table (cli-table3, no colours): one row per model with parameters, MACs,
 * latency (tfjs, ORT), zero-shot top-1/top-5, retrieval R@1 and the change against the first
 * (baseline) row. Missing values print as '—'.
 */
import Table from 'cli-table3';
import { latencyMs, type EvalRow } from './report.js';

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
    ['MACs', dpct(row.macs.image + row.macs.text, base.macs.image + base.macs.text)],
    ['params', dpct(row.params.total, base.params.total)],
  ];
  const s = parts.filter(([, v]) => v != null).map(([k, v]) => `${k} ${v}`);
  return s.length > 0 ? s.join(' · ') : NA;
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

/** Renders the rows as a text table; the first row is the baseline of the Δ column. */
export function renderTable(rows: readonly EvalRow[]): string {
  const t = new Table({ head: [...TABLE_HEAD], style: { head: [], border: [] } });
  const base = rows[0];
  for (const r of rows) {
    const tf = r.latency?.tfjs;
    const ort = r.latency?.ort;
    t.push([
      r.name,
      pair(r.params.image, r.params.text, 2, 1e-6),
      pair(r.macs.image, r.macs.text, 3, 1e-9),
      pair(tf?.image.b1.medianMs, tf?.text.b1.medianMs, 2),
      pair(ort?.image?.b1?.medianMs, ort?.text?.b1?.medianMs, 2),
      fmt(r.zeroShot?.top1, 1, 100),
      fmt(r.zeroShot?.top5, 1, 100),
      pair(r.retrieval?.i2t.r1, r.retrieval?.t2i.r1, 1, 100),
      r === base ? 'baseline' : deltaText(r, base),
    ]);
  }
  return t.toString();
}
