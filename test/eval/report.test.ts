import { describe, expect, test } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeLatency, latencyMs, latencySpreadMs, writeReport, type EvalRow } from '../../src/eval/report.js';
import { renderTable, TABLE_NOTE_REDUCED } from '../../src/eval/table.js';
import { splitBaselines } from '../../src/eval/baselines.js';
import { niceTicks, paretoFront, renderScatterSvg } from '../../src/eval/plot.js';
import type { LatencyStats, TfjsLatency } from '../../src/eval/latency.js';

const st = (ms: number, batch = 1): LatencyStats => ({ batch, warmup: 5, runs: 30, medianMs: ms, p90Ms: ms * 1.1, meanMs: ms, minMs: ms * 0.9, maxMs: ms * 1.3 });
const lat = (img: number, txt: number): TfjsLatency => ({
  backend: 'wasm',
  threads: 1,
  image: { b1: st(img), bN: st(img * 6, 8) },
  text: { b1: st(txt), bN: st(txt * 6, 8) },
});

function row(name: string, ms: number, top1: number, macs: number): EvalRow {
  return {
    name,
    params: { image: 11.4e6, text: 42.4e6, total: 53.8e6 },
    macs: { image: macs, text: 1.3e9 },
    latency: { tfjs: lat(ms, ms / 2) },
    zeroShot: { top1, top5: Math.min(1, top1 + 0.2) },
    retrieval: { i2t: { r1: 0.5, r5: 0.8, r10: 0.9 }, t2i: { r1: 0.4, r5: 0.7, r10: 0.8 } },
  };
}

const ROWS: EvalRow[] = [
  row('S0 (baseline)', 20, 0.678, 2.4e9),
  row('S0 pruned <a&b>', 14, 0.65, 1.6e9), // Pareto: faster, less accurate
  row('S0 worse', 25, 0.6, 2.5e9), // dominated
  row('S0 distilled', 30, 0.7, 2.6e9), // Pareto: slowest, most accurate
  { name: 'no accuracy', params: { image: 1, text: 1, total: 3 }, macs: { image: 1e9, text: 1e9 } },
];
ROWS[1].latency!.ort = { image: { b1: st(5) }, text: { b1: st(3) }, provider: 'cpu' };

/** Minimal XML well-formedness check: prolog/comments, balanced tags, quoted attributes, known entities. */
function checkWellFormed(xml: string): { root: string; elements: string[] } {
  let s = xml.replace(/^<\?xml[^?]*\?>\s*/, '');
  s = s.replace(/<!--([\s\S]*?)-->/g, (_m, c: string) => {
    if (c.includes('--')) throw new Error('"--" inside a comment');
    return '';
  });
  const stack: string[] = [];
  const elements: string[] = [];
  let root = '';
  const tag = /<(\/?)([A-Za-z_][\w:.-]*)((?:\s+[A-Za-z_][\w:.-]*\s*=\s*(?:"[^"<]*"|'[^'<]*'))*)\s*(\/?)>/y;
  let i = 0;
  while (i < s.length) {
    const lt = s.indexOf('<', i);
    const text = s.slice(i, lt < 0 ? s.length : lt);
    for (const m of text.matchAll(/&([^;\s]*);?/g)) if (!/^(amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+)$/.test(m[1]) || !m[0].endsWith(';')) throw new Error(`bad entity ${m[0]}`);
    if (text.includes('>')) throw new Error('stray >');
    if (lt < 0) break;
    if (stack.length === 0 && root !== '' ) throw new Error('content after the root element');
    tag.lastIndex = lt;
    const m = tag.exec(s);
    if (!m) throw new Error(`malformed tag at ${lt}: ${s.slice(lt, lt + 40)}`);
    const [, close, name, attrs, selfClose] = m;
    for (const a of attrs.matchAll(/"([^"]*)"|'([^']*)'/g)) for (const e of (a[1] ?? a[2]).matchAll(/&([^;]*);/g)) if (!/^(amp|lt|gt|quot|apos|#\d+)$/.test(e[1])) throw new Error(`bad entity in attribute: ${e[0]}`);
    if (close) {
      if (stack.pop() !== name) throw new Error(`mismatched </${name}>`);
    } else {
      if (root === '') root = name;
      elements.push(name);
      if (!selfClose) stack.push(name);
    }
    i = tag.lastIndex;
  }
  if (stack.length) throw new Error(`unclosed <${stack.join('>, <')}>`);
  return { root, elements };
}

describe('table', () => {
  test('one row per model, Δ column against the first row, missing values as —', () => {
    const t = renderTable(ROWS);
    expect(t).toContain('Δ vs baseline');
    expect(t).toContain('baseline');
    expect(t).toContain('top1 −2.8pp');
    expect(t).toContain('tfjs −30%');
    expect(t).toContain('top1 +2.2pp');
    for (const r of ROWS) expect(t).toContain(r.name);
    expect(t).toContain('5.00 / 3.00'); // ORT b1
    expect(t).toContain('—');
    expect(t).not.toMatch(/\u001b\[/); // no colours
    expect(t).not.toContain(TABLE_NOTE_REDUCED);
  });

  test('a token-reduced row shows the text MACs measured with its reducers (marked *), and Δ MACs compares them', () => {
    const reduced: EvalRow = { ...row('S0 tokens', 10, 0.67, 2.4e9), macs: { image: 2.4e9, text: 1.3e9, textPresent: 0.3e9, textReduced: 0.3e9 } };
    const t = renderTable([ROWS[0], reduced]);
    expect(t).toContain('2.400 / 0.300*');
    expect(t).toContain('2.400 / 1.300 '); // the baseline: the full context
    // (2.4 + 0.3) / (2.4 + 1.3) − 1 = −27 %
    expect(t).toContain('MACs −27%');
    expect(t.trimEnd().split('\n').at(-1)).toBe(TABLE_NOTE_REDUCED);
  });
});

describe('table: reference rows', () => {
  test('chance and majority class sit under the models with their accuracies; cost cells stay empty', () => {
    // 4 classes, 'cat' is 3 of 6 samples; one caption per image.
    const b = splitBaselines([0, 0, 0, 1, 2, 3], ['cat', 'dog', 'car', 'cow'], { textToImage: [0, 1, 2, 3, 4, 5], images: 6 });
    const lines = renderTable(ROWS.slice(0, 2), { baselines: b }).split('\n');
    const cells = (name: string) => lines.find((l) => l.startsWith(`│ ${name} `))!.split('│').slice(1, -1).map((c) => c.trim());
    expect(cells('chance')).toEqual(['chance', '', '', '', '', '25.0', '100.0', '16.7 / 16.7', 'reference: uniform guess over 4 classes']);
    expect(cells('majority class')).toEqual(['majority class', '', '', '', '', '50.0', '100.0', '—', "reference: always 'cat' (3 of 6 samples)"]);
    // after the model rows
    expect(lines.findIndex((l) => l.startsWith('│ chance '))).toBeGreaterThan(lines.findIndex((l) => l.startsWith('│ S0 pruned')));
    expect(renderTable(ROWS.slice(0, 2))).not.toContain('chance');
  });
});

describe('latency accessors', () => {
  test('spread = p90 − median summed over the towers; the label names engine, batch and towers', () => {
    const r = ROWS[1]; // tfjs 14 + 7 ms, p90 = 1.1 × median; ORT 5 + 3 ms
    expect(latencyMs(r)).toBeCloseTo(21, 12);
    expect(latencySpreadMs(r)).toBeCloseTo(2.1, 12);
    expect(latencySpreadMs(r, { tower: 'image' })).toBeCloseTo(1.4, 12);
    expect(latencySpreadMs(r, { engine: 'ort' })).toBeCloseTo(0.8, 12);
    expect(latencySpreadMs(ROWS[4])).toBeUndefined();
    expect(describeLatency(ROWS)).toBe('latency (ms, median): tfjs wasm (1 thread), batch 1, image + text');
    expect(describeLatency(ROWS, { batch: 'bN', tower: 'text' })).toBe('latency (ms, median): tfjs wasm (1 thread), batch 8, text');
    expect(describeLatency(ROWS, { engine: 'ort' })).toBe('latency (ms, median): ORT onnxruntime-node CPU, batch 1, image + text');
  });
});

describe('report', () => {
  test('writeReport: baselines go into the JSON beside meta', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mclip-eval-'));
    try {
      const p = join(dir, 'report.json');
      writeReport(p, ROWS.slice(0, 1), { split: 'eval' }, splitBaselines([0, 1, 1], ['a', 'b']));
      const j = JSON.parse(readFileSync(p, 'utf8'));
      expect(j.baselines.chance.top1).toBe(0.5);
      expect(j.baselines.majority).toEqual({ top1: 2 / 3, top5: 1, class: 'b', count: 2 });
      writeReport(p, ROWS.slice(0, 1));
      expect(JSON.parse(readFileSync(p, 'utf8'))).not.toHaveProperty('baselines');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('writeReport: JSON round trip, no temp file left', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mclip-eval-'));
    try {
      const p = join(dir, 'sub', 'report.json');
      writeReport(p, ROWS, { backend: 'wasm', note: 'test' });
      writeReport(p, ROWS.slice(0, 2), { backend: 'wasm' }); // overwrite
      const j = JSON.parse(readFileSync(p, 'utf8'));
      expect(j.format).toBe('mclip-eval');
      expect(j.rows).toHaveLength(2);
      expect(j.meta.backend).toBe('wasm');
      expect(j.rows[0].latency.tfjs.image.b1.medianMs).toBe(20);
      expect(readdirSync(join(dir, 'sub'))).toEqual(['report.json']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('scatter SVG', () => {
  test('pareto front and ticks', () => {
    const f = paretoFront([
      { name: 'a', x: 1, y: 1 },
      { name: 'b', x: 2, y: 0.5 },
      { name: 'c', x: 3, y: 2 },
      { name: 'd', x: 3, y: 1.5 },
    ]);
    expect(f.map((p) => p.name)).toEqual(['a', 'c']);
    const t = niceTicks(0, 27);
    expect(t[0]).toBe(0);
    expect(t[t.length - 1]).toBeGreaterThanOrEqual(27);
  });

  for (const x of ['latency', 'macs', 'params'] as const) {
    test(`well-formed, one point per model, Pareto polyline (x = ${x})`, () => {
      const svg = renderScatterSvg(ROWS, { x, y: 'top1' });
      const { root, elements } = checkWellFormed(svg);
      expect(root).toBe('svg');
      const plotted = ROWS.filter((r) => r.zeroShot).length;
      expect(elements.filter((e) => e === 'circle')).toHaveLength(plotted);
      expect((svg.match(/<g class="point">/g) ?? []).length).toBe(plotted);
      const poly = svg.match(/<polyline class="pareto" points="([^"]+)"/);
      expect(poly).not.toBeNull();
      const pts = poly![1].trim().split(/\s+/);
      expect(pts.length).toBeGreaterThanOrEqual(x === 'params' ? 1 : 2); // equal params: one front point
      for (const p of pts) expect(p).toMatch(/^-?[\d.]+,-?[\d.]+$/);
      expect(svg).toContain('S0 pruned &lt;a&amp;b&gt;');
      expect(svg).toContain('no accuracy'); // named in the "not plotted" comment
    });
  }

  test('latency x: front is pruned → baseline → distilled', () => {
    const svg = renderScatterSvg(ROWS, { x: 'latency', y: 'top1' });
    expect(svg.match(/<polyline class="pareto" points="([^"]+)"/)![1].split(' ')).toHaveLength(3);
    expect(() => checkWellFormed(svg.replace('</svg>', ''))).toThrow(/unclosed/);
    expect(() => checkWellFormed(svg.replace('&amp;b', '&b'))).toThrow(/entity/);
  });
});
