import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { colorEvalSetup, each, type Rgb } from './color-data.js';
import { evenlySpaced } from '../../src/cli/commands/eval.js';
import { runCli, tempDir, expectOneLineError } from './helpers.js';

const COLORS: Record<string, Rgb> = { red: [220, 30, 30], green: [30, 200, 40], blue: [30, 40, 220] };

describe('mclip eval', () => {
  const tmp = tempDir('mclip-eval-');
  const dir = tmp.dir;
  // the ONNX engine's export cache stays in the test's folder
  const opts = { env: { MCLIP_CACHE_DIR: join(tmp.dir, 'cache') } };
  afterAll(() => tmp.cleanup());
  beforeAll(async () => {
    await colorEvalSetup(dir, each(COLORS, 3), 32);
  });

  test('two models: a table with a baseline and a Δ row, a JSON report and an SVG with one point each', async () => {
    const r = await runCli(['eval', '--model', `A=${join(dir, 'a.safetensors')}`, '--model', `B=${join(dir, 'b.safetensors')}`, '--data', join(dir, 'data'), '--vocab', join(dir, 'vocab'), '--no-latency', '--json', join(dir, 'r.json'), '--plot', join(dir, 'p.svg')], opts);
    expect(r.status, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toMatch(/│ A\s+│/);
    expect(r.stdout).toMatch(/baseline/);
    expect(r.stdout).toMatch(/top1 [+−-]\d/);
    const rep = JSON.parse(readFileSync(join(dir, 'r.json'), 'utf8')) as { rows: Array<{ name: string; zeroShot: { top1: number; top5: number }; retrieval: { i2t: { r1: number } }; params: { total: number } }> };
    expect(rep.rows.map((x) => x.name)).toEqual(['A', 'B']);
    // the default engine: onnxruntime on each checkpoint's cached export, one line per model
    expect(r.stderr).toMatch(/^mclip: A: engine ort \(onnxruntime-node .*\)$/m);
    expect(r.stderr).toMatch(/^mclip: B: engine ort \(onnxruntime-node .*\)$/m);
    for (const row of rep.rows) {
      // 3 classes × 3 samples: accuracy is a multiple of 1/9; top-5 covers all 3 classes.
      expect(Math.abs(row.zeroShot.top1 * 9 - Math.round(row.zeroShot.top1 * 9))).toBeLessThan(1e-9);
      expect(row.zeroShot.top5).toBe(1);
      expect(row.retrieval.i2t.r1).toBeGreaterThanOrEqual(0);
      expect(row.params.total).toBeGreaterThan(1e5);
    }
    const svg = readFileSync(join(dir, 'p.svg'), 'utf8');
    expect(svg.startsWith('<svg') || svg.startsWith('<?xml')).toBe(true);
    expect(svg.match(/<circle/g)?.length).toBe(2);
  });

  test('--sample N takes N samples evenly spaced over the split, so every class stays in', async () => {
    const r = await runCli(['eval', '--model', join(dir, 'a.safetensors'), '--data', join(dir, 'data'), '--vocab', join(dir, 'vocab'), '--sample', '3', '--no-latency', '--json', join(dir, 's.json')], opts);
    expect(r.status, r.stderr + r.stdout).toBe(0);
    const rep = JSON.parse(readFileSync(join(dir, 's.json'), 'utf8')) as { meta: { samples: number; classes: number }; rows: Array<{ zeroShot: { top1: number } }> };
    // The split is ordered red×3, green×3, blue×3: samples 0, 3, 6 are one of each class (--limit 3 would give red only).
    expect(rep.meta).toMatchObject({ samples: 3, classes: 3 });
    expect(Math.abs(rep.rows[0].zeroShot.top1 * 3 - Math.round(rep.rows[0].zeroShot.top1 * 3))).toBeLessThan(1e-9);
    const bad = await runCli(['eval', '--model', join(dir, 'a.safetensors'), '--data', join(dir, 'data'), '--vocab', join(dir, 'vocab'), '--sample', '3', '--limit', '5', '--no-latency'], opts);
    expectOneLineError(expect, bad, /--sample and --limit exclude each other/);
    const zero = await runCli(['eval', '--model', join(dir, 'a.safetensors'), '--data', join(dir, 'data'), '--vocab', join(dir, 'vocab'), '--sample', '0', '--no-latency'], opts);
    expectOneLineError(expect, zero, /--sample: expected a positive integer/);
  });

  test('evenlySpaced picks the first of each stride, and everything when N ≥ length', () => {
    const xs = Array.from({ length: 10 }, (_, i) => i);
    expect(evenlySpaced(xs, 4)).toEqual([0, 2, 5, 7]);
    expect(evenlySpaced(xs, 1)).toEqual([0]);
    expect(evenlySpaced(xs, 10)).toEqual(xs);
    expect(evenlySpaced(xs, 50)).toEqual(xs);
  });

  test('a missing data folder and an unreadable model are one-line errors', async () => {
    const r1 = await runCli(['eval', '--model', join(dir, 'a.safetensors'), '--data', join(dir, 'nope'), '--vocab', join(dir, 'vocab'), '--no-latency'], opts);
    expectOneLineError(expect, r1, /data folder not found/);
    const r2 = await runCli(['eval', '--model', join(dir, 'vocab', 'clip-vocab.json'), '--data', join(dir, 'data'), '--vocab', join(dir, 'vocab'), '--no-latency'], opts);
    expectOneLineError(expect, r2, /unknown checkpoint extension/);
    const r3 = await runCli(['eval', '--model', join(dir, 'a.safetensors'), '--data', join(dir, 'data'), '--vocab', join(dir, 'vocab'), '--no-latency', '--engine', 'onnx'], opts);
    expectOneLineError(expect, r3, /^mclip: usage error: --engine: expected one of ort, tfjs, got 'onnx'/, 2);
  });
});
