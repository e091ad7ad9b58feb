import { describe, expect, test } from 'vitest';
import { dominates, paretoFront, renderScatterSvg, type ScatterPoint } from '../../src/eval/plot.js';
import type { EvalRow } from '../../src/eval/report.js';
import type { LatencyStats } from '../../src/eval/latency.js';

const names = (ps: ScatterPoint[]) => ps.map((p) => p.name);

describe('Pareto front with a latency spread', () => {
  test('a speed advantage within the spread does not keep a less accurate model on the front', () => {
    const a = { name: 'A', x: 10, y: 70, spread: 1 };
    const b = { name: 'B', x: 9.5, y: 60, spread: 1 }; // 0.5 ms faster: noise
    expect(names(paretoFront([a, b]))).toEqual(['A']);
    expect(dominates(a, b)).toBe(true);
    // Without the spread B is on the front (strictly faster).
    expect(names(paretoFront([{ ...a, spread: 0 }, { ...b, spread: 0 }]))).toEqual(['B', 'A']);
  });

  test('equally accurate and within the spread: a tie, both stay', () => {
    const a = { name: 'A', x: 10, y: 70, spread: 1 };
    const c = { name: 'C', x: 10.5, y: 70, spread: 0.2 }; // tolerance = the larger spread (1)
    expect(names(paretoFront([c, a]))).toEqual(['A', 'C']);
    expect(dominates(a, c)).toBe(false);
    expect(dominates(c, a)).toBe(false);
    expect(names(paretoFront([{ ...a, spread: 0 }, { ...c, spread: 0 }]))).toEqual(['A']);
  });

  test('faster by more than the spread and at least as accurate dominates', () => {
    const a = { name: 'A', x: 10, y: 70, spread: 1 };
    expect(names(paretoFront([a, { name: 'D', x: 12, y: 70, spread: 0.5 }]))).toEqual(['A']);
    // …unless the slower one is more accurate.
    expect(names(paretoFront([a, { name: 'E', x: 12, y: 71, spread: 0.5 }]))).toEqual(['A', 'E']);
  });

  test('the tolerance is the larger of the two spreads', () => {
    const p = { name: 'P', x: 10, y: 60, spread: 0.1 };
    const q = { name: 'Q', x: 10.8, y: 70, spread: 1 }; // 0.8 ms slower, within Q's spread
    expect(names(paretoFront([p, q]))).toEqual(['Q']);
    expect(names(paretoFront([{ ...p }, { ...q, spread: 0.5 }]))).toEqual(['P', 'Q']);
  });

  test('exact duplicates keep the first only', () => {
    expect(names(paretoFront([{ name: 'a', x: 1, y: 1 }, { name: 'b', x: 1, y: 1 }]))).toEqual(['a']);
  });
});

const st = (median: number, p90: number, batch = 1): LatencyStats => ({ batch, warmup: 5, runs: 30, medianMs: median, p90Ms: p90, meanMs: median, minMs: median * 0.9, maxMs: p90 * 1.2 });

function row(name: string, img: [number, number], txt: [number, number], top1: number): EvalRow {
  return {
    name,
    params: { image: 1e6, text: 1e6, total: 2e6 },
    macs: { image: 1e9, text: 1e9 },
    latency: {
      tfjs: { backend: 'wasm', package: '@tensorflow/tfjs-backend-wasm', threads: 1, image: { b1: st(...img), bN: st(img[0] * 6, img[1] * 6, 8) }, text: { b1: st(...txt), bN: st(txt[0] * 6, txt[1] * 6, 8) } },
      ort: { image: { b1: st(img[0] / 4, img[0] / 4 + 0.01) }, text: { b1: st(txt[0] / 4, txt[0] / 4 + 0.01) }, provider: 'cpu', threads: 2, version: '1.30.0' },
    },
    zeroShot: { top1, top5: 1 },
  };
}

describe('scatter SVG: latency axis and front', () => {
  // tfjs b1, image + text: fast = 6 + 3 = 9 ms, spread (7 − 6) + (3.5 − 3) = 1.5; slow = 10 ms, spread 1.5.
  const rows = [row('slow', [6.5, 7.5], [3.5, 4], 0.7), row('fast', [6, 7], [3, 3.5], 0.6)];

  test('tfjs: the label names engine, batch and towers; x is image + text median; the 1 ms gap is a tie', () => {
    const svg = renderScatterSvg(rows, { x: 'latency', y: 'top1', latency: { engine: 'tfjs', batch: 'b1', tower: 'sum' } });
    expect(svg).toContain('<text class="x-label" x="380.0" y="465" text-anchor="middle">latency (ms, median): tfjs wasm (@tensorflow/tfjs-backend-wasm, 1 thread), batch 1, image + text</text>');
    expect(svg).toContain('<title>slow: 10 (p90 − median 1.5), 70.00</title>');
    expect(svg).toContain('<title>fast: 9 (p90 − median 1.5), 60.00</title>');
    expect((svg.match(/fill="#d62728"><title>(\w+)/g) ?? []).map((m) => m.split('>').pop())).toEqual(['slow']); // 'fast' is only faster within the spread
    expect(svg).toContain('latency closer than p90 − median (whisker) counts as a tie');
    expect(svg.match(/<line class="spread"/g)).toHaveLength(2);
  });

  test('ORT: x and label follow the engine; its spread (0.01) separates the two, so both are on the front', () => {
    const svg = renderScatterSvg(rows, { x: 'latency', y: 'top1', latency: { engine: 'ort', batch: 'b1', tower: 'sum' } });
    expect(svg).toContain('>latency (ms, median): ORT onnxruntime-node 1.30.0 CPU (2 threads), batch 1, image + text</text>');
    expect(svg).toContain('<title>slow: 2.5 (p90 − median 0.02), 70.00</title>');
    expect((svg.match(/fill="#d62728"><title>/g) ?? []).length).toBe(2);
  });

  test('batch 8, image tower: label says so', () => {
    const svg = renderScatterSvg(rows, { x: 'latency', y: 'top1', latency: { batch: 'bN', tower: 'image' } });
    expect(svg).toContain('>latency (ms, median): tfjs wasm (@tensorflow/tfjs-backend-wasm, 1 thread), batch 8, image</text>');
    expect(svg).toContain('<title>slow: 39 (p90 − median 6), 70.00</title>');
  });

  test('MACs axis: no spread, no tie legend', () => {
    const svg = renderScatterSvg(rows, { x: 'macs', y: 'top1' });
    expect(svg).toContain('>GMACs (image + text)</text>');
    expect(svg).not.toContain('counts as a tie');
    expect(svg).not.toContain('class="spread"');
  });
});
