/**
 * Accuracy-vs-cost scatter plot as a standalone SVG: axes with "nice" ticks and labels (the
 * latency axis names engine, batch and towers), one labelled point per model (rows lacking
 * either value are left out, listed in a comment), and the Pareto front (lowest cost, highest
 * accuracy; latency differences within the measurement's spread count as ties) drawn as a polyline.
 */
import { describeLatency, latencySpreadMs, xValue, yValue, type EvalRow, type LatencyChoice, type XMetric, type YMetric } from './report.js';

export interface ScatterOptions {
  x: XMetric;
  y: YMetric;
  /** Which latency the 'latency' axis uses (default tfjs, image + text, batch 1). */
  latency?: LatencyChoice;
  title?: string;
  width?: number;
  height?: number;
}

export interface ScatterPoint {
  name: string;
  x: number;
  y: number;
  /** Measurement spread of x (≥ 0; latency: p90 − median); x values closer than this are not told apart. Default 0. */
  spread?: number;
}

/** Escapes text for XML content and attribute values. */
export function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

/**
 * Whether `q` dominates `p` for (min x, max y) when x is only known up to its spread: q is at least as
 * accurate, not slower beyond the spread (q.x ≤ p.x + tol), and strictly better somewhere: more
 * accurate, or faster by more than the spread (q.x < p.x − tol); tol = the larger of the two
 * points' spreads. A latency difference within tol is a tie: it neither keeps a less accurate
 * model on the front nor pushes an equally accurate one off it. With spread 0 this is the usual
 * Pareto dominance.
 */
export function dominates(q: ScatterPoint, p: ScatterPoint): boolean {
  const tol = Math.max(q.spread ?? 0, p.spread ?? 0, 0);
  if (q.y < p.y || q.x > p.x + tol) return false;
  return q.y > p.y || q.x < p.x - tol;
}

/**
 * The points no other point dominates (see `dominates`), sorted by x (then y, descending).
 * Exact duplicates keep only the first.
 */
export function paretoFront(points: readonly ScatterPoint[]): ScatterPoint[] {
  const out = points.filter((p, i) => !points.some((q, j) => j !== i && (dominates(q, p) || (j < i && q.x === p.x && q.y === p.y))));
  return out.sort((a, b) => a.x - b.x || b.y - a.y);
}

/** About `n` round tick values covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, n = 5): number[] {
  if (!(hi > lo)) {
    const d = Math.abs(lo) > 0 ? Math.abs(lo) * 0.1 : 1;
    lo -= d;
    hi += d;
  }
  const raw = (hi - lo) / Math.max(1, n);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.floor(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  if (out[out.length - 1] < hi) out.push(Number((out[out.length - 1] + step).toPrecision(12)));
  return out;
}

const X_LABEL: Record<XMetric, string> = { latency: 'latency (ms)', macs: 'GMACs (image + text)', params: 'parameters (M)' };
const Y_LABEL: Record<YMetric, string> = {
  top1: 'zero-shot top-1 (%)',
  top5: 'zero-shot top-5 (%)',
  i2tR1: 'image→text R@1 (%)',
  t2iR1: 'text→image R@1 (%)',
  meanR1: 'mean R@1 (%)',
};

function fmtTick(v: number): string {
  return Number(v.toPrecision(6)).toString();
}

/** The scatter plot as an SVG document string. */
export function renderScatterSvg(rows: readonly EvalRow[], opts: ScatterOptions): string {
  const W = opts.width ?? 720;
  const H = opts.height ?? 480;
  const m = { l: 70, r: 30, t: 40, b: 60 };
  const pts: ScatterPoint[] = [];
  const skipped: string[] = [];
  for (const r of rows) {
    const x = xValue(r, opts.x, opts.latency);
    const y = yValue(r, opts.y);
    const spread = opts.x === 'latency' ? (latencySpreadMs(r, opts.latency) ?? 0) : 0;
    if (x == null || y == null || !Number.isFinite(x) || !Number.isFinite(y)) skipped.push(r.name);
    else pts.push({ name: r.name, x, y: y * 100, spread: Number.isFinite(spread) ? spread : 0 });
  }
  const xLabel = opts.x === 'latency' ? describeLatency(rows, opts.latency) : X_LABEL[opts.x];
  const xs = pts.map((p) => p.x + (p.spread ?? 0));
  const ys = pts.map((p) => p.y);
  const xt = niceTicks(xs.length ? Math.min(0, ...xs) : 0, xs.length ? Math.max(...xs) : 1);
  const yt = niceTicks(ys.length ? Math.min(...ys) : 0, ys.length ? Math.max(...ys) : 100);
  const [x0, x1] = [xt[0], xt[xt.length - 1]];
  const [y0, y1] = [yt[0], yt[yt.length - 1]];
  const px = (v: number) => m.l + ((v - x0) / (x1 - x0)) * (W - m.l - m.r);
  const py = (v: number) => H - m.b - ((v - y0) / (y1 - y0)) * (H - m.t - m.b);
  const f = (v: number) => v.toFixed(1);
  const title = opts.title ?? `${Y_LABEL[opts.y]} vs ${X_LABEL[opts.x]}`;
  const out: string[] = [];
  out.push('<?xml version="1.0" encoding="UTF-8"?>');
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  if (skipped.length) out.push(`<!-- not plotted (missing ${opts.x} or ${opts.y}): ${xmlEscape(skipped.join(', ')).replace(/--/g, '- -')} -->`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="14">${xmlEscape(title)}</text>`);
  // grid + ticks
  out.push('<g class="axes" stroke="#ccc" stroke-width="1">');
  for (const v of xt) out.push(`<line x1="${f(px(v))}" y1="${m.t}" x2="${f(px(v))}" y2="${H - m.b}"/>`);
  for (const v of yt) out.push(`<line x1="${m.l}" y1="${f(py(v))}" x2="${W - m.r}" y2="${f(py(v))}"/>`);
  out.push('</g>');
  out.push(`<g class="frame" stroke="black" stroke-width="1.5"><line x1="${m.l}" y1="${H - m.b}" x2="${W - m.r}" y2="${H - m.b}"/><line x1="${m.l}" y1="${m.t}" x2="${m.l}" y2="${H - m.b}"/></g>`);
  out.push('<g class="tick-labels" fill="black">');
  for (const v of xt) out.push(`<text x="${f(px(v))}" y="${H - m.b + 18}" text-anchor="middle">${fmtTick(v)}</text>`);
  for (const v of yt) out.push(`<text x="${m.l - 8}" y="${f(py(v) + 4)}" text-anchor="end">${fmtTick(v)}</text>`);
  out.push('</g>');
  out.push(`<text class="x-label" x="${f((m.l + W - m.r) / 2)}" y="${H - 15}" text-anchor="middle">${xmlEscape(xLabel)}</text>`);
  out.push(`<text class="y-label" transform="translate(18 ${f((m.t + H - m.b) / 2)}) rotate(-90)" text-anchor="middle">${xmlEscape(Y_LABEL[opts.y])}</text>`);
  const front = paretoFront(pts);
  if (front.length > 0) {
    const line = front.map((p) => `${f(px(p.x))},${f(py(p.y))}`).join(' ');
    out.push(`<polyline class="pareto" points="${line}" fill="none" stroke="#d62728" stroke-width="2" stroke-dasharray="6 3"/>`);
  }
  const onFront = new Set(front);
  out.push('<g class="points">');
  for (const p of pts) {
    const fill = onFront.has(p) ? '#d62728' : '#1f77b4';
    // The spread as a whisker from the median to the p90: two points tie on latency when closer than the longer whisker.
    if (p.spread) out.push(`<line class="spread" x1="${f(px(p.x))}" y1="${f(py(p.y))}" x2="${f(px(p.x + p.spread))}" y2="${f(py(p.y))}" stroke="${fill}" stroke-width="1" opacity="0.6"/>`);
    const spread = p.spread ? ` (p90 − median ${fmtTick(Number(p.spread.toPrecision(3)))})` : '';
    out.push(
      `<g class="point"><circle cx="${f(px(p.x))}" cy="${f(py(p.y))}" r="5" fill="${fill}"><title>${xmlEscape(`${p.name}: ${fmtTick(p.x)}${spread}, ${p.y.toFixed(2)}`)}</title></circle>` +
        `<text x="${f(px(p.x) + 8)}" y="${f(py(p.y) - 8)}">${xmlEscape(p.name)}</text></g>`,
    );
  }
  out.push('</g>');
  const rule = opts.x === 'latency' ? '<text class="pareto-rule" x="0" y="20" font-size="10">latency closer than p90 − median (whisker) counts as a tie</text>' : '';
  const legendX = opts.x === 'latency' ? W - m.r - 280 : W - m.r - 150;
  out.push(`<g class="legend" transform="translate(${legendX} ${m.t + 6})"><line x1="0" y1="0" x2="24" y2="0" stroke="#d62728" stroke-width="2" stroke-dasharray="6 3"/><text x="30" y="4">Pareto front</text>${rule}</g>`);
  out.push('</svg>');
  return out.join('\n') + '\n';
}
