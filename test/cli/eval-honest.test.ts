/**
 * `mclip eval` tells the truth about its numbers: chance and majority-class accuracy beside the
 * models (table and --json), progress lines with an ETA when stderr is not a terminal, latency
 * stats without nulls, a latency axis that names what it plots, a Pareto front that ignores
 * latency differences within the measurement's spread, and `--templates` checked up front.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { colorEvalSetup, type Rgb } from './color-data.js';
import { runCli, show, tempDir, expectOneLineError } from './helpers.js';

/** An unbalanced split: red ×5, green ×2, blue ×2 (majority 5/9, chance 1/3). */
const COUNTS: Record<string, { rgb: Rgb; n: number }> = {
  red: { rgb: [220, 30, 30], n: 5 },
  green: { rgb: [30, 200, 40], n: 2 },
  blue: { rgb: [30, 40, 220], n: 2 },
};
const N = 9;
const EMOJI_TEMPLATES = 6;

interface Stats { batch: number; warmup: number; runs: number; medianMs: number; p90Ms: number; meanMs: number; minMs: number; maxMs: number }
interface Engine { image: { b1: Stats; bN: Stats }; text: { b1: Stats; bN: Stats } }
interface Report {
  baselines: { chance: { top1: number; top5: number; top5K: number; t2iR1: number }; majority: { top1: number; top5: number; class: string; count: number }; samples: number; classes: number };
  rows: Array<{ name: string; zeroShot: { top1: number }; latency: { tfjs: Engine & { backend: string }; ort?: Engine & { provider: string; threads: number } } }>;
}

/** Every leaf under `v` with its path. */
function leaves(v: unknown, path = ''): Array<[string, unknown]> {
  if (v !== null && typeof v === 'object') return Object.entries(v).flatMap(([k, x]) => leaves(x, `${path}.${k}`));
  return [[path, v]];
}

/** Plotted points from the SVG titles: `NAME: X (p90 − median S), Y`, and whether they are drawn as front points. */
function points(svg: string): Array<{ name: string; x: number; spread: number; y: number; front: boolean }> {
  return [...svg.matchAll(/fill="(#[0-9a-f]+)"><title>([^:<]+): ([\d.e+-]+)(?: \(p90 − median ([\d.e+-]+)\))?, ([\d.]+)<\/title>/g)].map((m) => ({
    name: m[2],
    x: Number(m[3]),
    spread: m[4] === undefined ? 0 : Number(m[4]),
    y: Number(m[5]),
    front: m[1] === '#d62728',
  }));
}

const near = (a: number, b: number) => Math.abs(a - b) <= 1e-4 * Math.max(1, Math.abs(b));

describe('mclip eval: honest tables', () => {
  const tmp = tempDir('mclip-eval-honest-');
  const dir = tmp.dir;
  const base = () => ['eval', '--data', join(dir, 'data'), '--vocab', join(dir, 'vocab')];
  afterAll(() => tmp.cleanup());
  beforeAll(async () => {
    await colorEvalSetup(dir, COUNTS, 16);
  });

  test('chance and majority class: reference rows under the models and `baselines` in --json; progress lines with ETA on a non-terminal stderr', async () => {
    const r = await runCli([...base(), '--model', `A=${join(dir, 'a.safetensors')}`, '--model', `B=${join(dir, 'b.safetensors')}`, '--no-latency', '--json', join(dir, 'r.json')]);
    expect(r.status, show(r)).toBe(0);
    const lines = r.stdout.split('\n');
    const cells = (name: string) => lines.find((l) => l.startsWith(`│ ${name} `))?.split('│').slice(1, -1).map((c) => c.trim());
    expect(cells('chance'), r.stdout).toEqual(['chance', '', '', '', '', '33.3', '100.0', '11.1 / 11.1', 'reference: uniform guess over 3 classes']);
    expect(cells('majority class'), r.stdout).toEqual(['majority class', '', '', '', '', '55.6', '100.0', '—', "reference: always 'red' (5 of 9 samples)"]);
    expect(lines.findIndex((l) => l.startsWith('│ chance '))).toBeGreaterThan(lines.findIndex((l) => l.startsWith('│ B ')));
    const rep = JSON.parse(readFileSync(join(dir, 'r.json'), 'utf8')) as Report;
    expect(rep.baselines.chance.top1).toBeCloseTo(1 / 3, 12);
    expect(rep.baselines.chance.top5).toBe(1); // top-5 over 3 classes
    expect(rep.baselines.chance.t2iR1).toBeCloseTo(1 / 9, 12);
    expect(rep.baselines.majority).toEqual({ top1: 5 / 9, top5: 1, class: 'red', count: 5 });
    expect({ samples: rep.baselines.samples, classes: rep.baselines.classes }).toEqual({ samples: N, classes: 3 });

    // stderr is a pipe here: plain lines, each further tenth; per model 9 images preprocessed
    // (B reuses A's), 3 × 6 class prompts, 9 images and 9 captions embedded.
    const total = 2 * (N + 3 * EMOJI_TEMPLATES + N + N);
    const prog = [...r.stderr.matchAll(/^mclip: eval (\d+)\/(\d+) inputs \((\d+) %\) \| .* elapsed \| eta (\d+ s|\d+ min \d+ s|\?)/gm)];
    expect(prog.length, r.stderr).toBeGreaterThanOrEqual(5);
    for (const m of prog) expect(Number(m[2])).toBe(total);
    const done = prog.map((m) => Number(m[1]));
    expect(done).toEqual([...done].sort((a, b) => a - b));
    expect(done[done.length - 1]).toBe(total);
    expect(Number(prog[prog.length - 1][3])).toBe(100);
    expect(r.stderr).toMatch(/B: images already preprocessed/);
  });

  test('--quiet: no progress lines', async () => {
    const r = await runCli([...base(), '--model', join(dir, 'a.safetensors'), '--sample', '3', '--no-latency', '--quiet']);
    expect(r.status, show(r)).toBe(0);
    expect(r.stderr).not.toMatch(/mclip: eval \d+\//);
    expect(r.stdout).toMatch(/│ chance /);
  });

  test('ORT latency: no null or non-finite field in report.json; the plot axis names ORT, batch 1, image + text and plots their sum', async () => {
    const r = await runCli([...base(), '--model', `A=${join(dir, 'a.safetensors')}`, '--sample', '3', '--latency-runs', '2', '--json', join(dir, 'ort.json'), '--plot', join(dir, 'ort.svg')]);
    expect(r.status, show(r)).toBe(0);
    const rep = JSON.parse(readFileSync(join(dir, 'ort.json'), 'utf8')) as Report;
    const lat = rep.rows[0].latency;
    expect(lat.ort).toBeDefined();
    const bad = leaves(lat).filter(([, v]) => v === null || v === undefined || (typeof v === 'number' && !Number.isFinite(v)));
    expect(bad).toEqual([]);
    for (const eng of [lat.tfjs, lat.ort!]) {
      for (const s of [eng.image.b1, eng.image.bN, eng.text.b1, eng.text.bN]) {
        expect(Object.keys(s).sort()).toEqual(['batch', 'maxMs', 'meanMs', 'medianMs', 'minMs', 'p90Ms', 'runs', 'warmup']);
        expect(s.runs).toBe(2);
        expect(s.warmup).toBe(5);
        expect(s.minMs).toBeLessThanOrEqual(s.medianMs);
        expect(s.medianMs).toBeLessThanOrEqual(s.p90Ms);
        expect(s.p90Ms).toBeLessThanOrEqual(s.maxMs);
      }
    }
    const svg = readFileSync(join(dir, 'ort.svg'), 'utf8');
    expect(svg).toMatch(/<text class="x-label"[^>]*>latency \(ms, median\): ORT onnxruntime-node [\d.]+ CPU \(2 threads\), batch 1, image \+ text<\/text>/);
    const [p] = points(svg);
    const o = lat.ort!;
    expect(near(p.x, o.image.b1.medianMs + o.text.b1.medianMs), `${p.x} vs ORT ${o.image.b1.medianMs} + ${o.text.b1.medianMs}`).toBe(true);
  });

  test('tfjs latency (--no-ort): the axis names the backend; the front follows the spread rule on the report\'s own p90 − median', async () => {
    const r = await runCli([...base(), '--model', `A=${join(dir, 'a.safetensors')}`, '--model', `B=${join(dir, 'b.safetensors')}`, '--no-ort', '--sample', '3', '--latency-runs', '2', '--json', join(dir, 'tf.json'), '--plot', join(dir, 'tf.svg')]);
    expect(r.status, show(r)).toBe(0);
    const rep = JSON.parse(readFileSync(join(dir, 'tf.json'), 'utf8')) as Report;
    const svg = readFileSync(join(dir, 'tf.svg'), 'utf8');
    expect(svg).toContain('>latency (ms, median): tfjs wasm (@tensorflow/tfjs-backend-wasm, 1 thread), batch 1, image + text</text>');
    expect(svg).toContain('latency closer than p90 − median (whisker) counts as a tie');
    const pts = points(svg);
    expect(pts.map((p) => p.name)).toEqual(['A', 'B']);
    const expected = rep.rows.map((row) => {
      const t = row.latency.tfjs;
      return {
        x: t.image.b1.medianMs + t.text.b1.medianMs,
        spread: t.image.b1.p90Ms - t.image.b1.medianMs + (t.text.b1.p90Ms - t.text.b1.medianMs),
        y: 100 * row.zeroShot.top1,
      };
    });
    pts.forEach((p, i) => {
      expect(near(p.x, expected[i].x), `${p.name} x ${p.x} vs ${expected[i].x}`).toBe(true);
      expect(Math.abs(p.spread - expected[i].spread), `${p.name} spread ${p.spread} vs ${expected[i].spread}`).toBeLessThanOrEqual(0.005 * expected[i].spread + 1e-9);
    });
    // The rule, written out independently: q knocks p off when at least as accurate, not slower
    // beyond tol and better somewhere beyond it (tol = the larger spread).
    const off = (i: number) =>
      expected.some((q, j) => {
        const p = expected[i];
        const tol = Math.max(p.spread, q.spread);
        return j !== i && q.y >= p.y && q.x <= p.x + tol && (q.y > p.y || q.x < p.x - tol);
      });
    expect(pts.map((p) => p.front)).toEqual(expected.map((_, i) => !off(i)));
  });

  test('--templates bogus: a usage error naming the flag, the value and the choices, before any data loads', async () => {
    const r = await runCli(['eval', '--model', join(dir, 'a.safetensors'), '--data', join(dir, 'no-such-folder'), '--vocab', join(dir, 'vocab'), '--templates', 'bogus', '--no-latency']);
    expectOneLineError(expect, r, /--templates: unknown template set 'bogus' \(choices: openai, simple, emoji, single\)/, 2);
    const ok = await runCli(['eval', '--model', join(dir, 'a.safetensors'), '--data', join(dir, 'no-such-folder'), '--vocab', join(dir, 'vocab'), '--templates', 'single', '--no-latency']);
    expectOneLineError(expect, ok, /data folder not found/); // a known set gets as far as the data
  });
});
