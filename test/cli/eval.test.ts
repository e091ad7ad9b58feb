import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DatasetBuilder, rgbToPng } from '../../src/base/data/index.js';
import { trainVocab, writeVocab } from '../../src/base/tokenizer/index.js';
import { initBackend } from '../../src/base/backend/index.js';
import { CLIP } from '../../src/base/model/clip.js';
import { getConfig } from '../../src/base/model/configs.js';
import { saveModel } from '../../src/base/model/checkpoint.js';
import { evenlySpaced } from '../../src/cli/commands/eval.js';
import { runCli, tempDir, expectOneLineError } from './helpers.js';

const COLORS: Record<string, [number, number, number]> = { red: [220, 30, 30], green: [30, 200, 40], blue: [30, 40, 220] };

describe('mclip eval', () => {
  const tmp = tempDir('mclip-eval-');
  const dir = tmp.dir;
  afterAll(() => tmp.cleanup());
  beforeAll(async () => {
    const b = new DatasetBuilder(join(dir, 'data'), { splits: ['eval'], samplesPerShard: 4 });
    let k = 0;
    for (const [name, rgb] of Object.entries(COLORS)) {
      for (let i = 0; i < 3; i++) {
        const px = new Uint8Array(32 * 32 * 3);
        for (let p = 0; p < 32 * 32; p++) px.set([rgb[0] - 10 * i, rgb[1], rgb[2]], p * 3);
        await b.add('eval', `s${k++}`, { image: await rgbToPng(px, 32, 32), caption: `a ${name} square`, captions: [`${name}`], labels: { category: name } });
      }
    }
    await b.close({ name: 'colors', image: { width: 32, height: 32 } });
    const caps = Object.keys(COLORS).flatMap((c) => [`a ${c} square`, `an emoji of ${c}`, c]);
    const cfg = getConfig('mobileclip_tiny');
    const vocab = trainVocab([...caps, ...Array.from({ length: 200 }, (_, i) => `word${i} thing${i % 7}`)], 600);
    writeVocab(join(dir, 'vocab'), vocab);
    cfg.text.vocabSize = Object.keys(vocab.vocab).length;
    await initBackend({ backend: 'wasm', quiet: true, gradients: false });
    saveModel(new CLIP(cfg, { seed: 1 }), join(dir, 'a.safetensors'));
    saveModel(new CLIP(cfg, { seed: 2 }), join(dir, 'b.safetensors'));
  });

  test('two models: a table with a baseline and a Δ row, a JSON report and an SVG with one point each', async () => {
    const r = await runCli(['eval', '--model', `A=${join(dir, 'a.safetensors')}`, '--model', `B=${join(dir, 'b.safetensors')}`, '--data', join(dir, 'data'), '--vocab', join(dir, 'vocab'), '--no-latency', '--json', join(dir, 'r.json'), '--plot', join(dir, 'p.svg')]);
    expect(r.status, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toMatch(/│ A\s+│/);
    expect(r.stdout).toMatch(/baseline/);
    expect(r.stdout).toMatch(/top1 [+−-]\d/);
    const rep = JSON.parse(readFileSync(join(dir, 'r.json'), 'utf8')) as { rows: Array<{ name: string; zeroShot: { top1: number; top5: number }; retrieval: { i2t: { r1: number } }; params: { total: number } }> };
    expect(rep.rows.map((x) => x.name)).toEqual(['A', 'B']);
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
    const r = await runCli(['eval', '--model', join(dir, 'a.safetensors'), '--data', join(dir, 'data'), '--vocab', join(dir, 'vocab'), '--sample', '3', '--no-latency', '--json', join(dir, 's.json')]);
    expect(r.status, r.stderr + r.stdout).toBe(0);
    const rep = JSON.parse(readFileSync(join(dir, 's.json'), 'utf8')) as { meta: { samples: number; classes: number }; rows: Array<{ zeroShot: { top1: number } }> };
    // The split is ordered red×3, green×3, blue×3: samples 0, 3, 6 are one of each class (--limit 3 would give red only).
    expect(rep.meta).toMatchObject({ samples: 3, classes: 3 });
    expect(Math.abs(rep.rows[0].zeroShot.top1 * 3 - Math.round(rep.rows[0].zeroShot.top1 * 3))).toBeLessThan(1e-9);
    const bad = await runCli(['eval', '--model', join(dir, 'a.safetensors'), '--data', join(dir, 'data'), '--vocab', join(dir, 'vocab'), '--sample', '3', '--limit', '5', '--no-latency']);
    expectOneLineError(expect, bad, /--sample and --limit exclude each other/);
    const zero = await runCli(['eval', '--model', join(dir, 'a.safetensors'), '--data', join(dir, 'data'), '--vocab', join(dir, 'vocab'), '--sample', '0', '--no-latency']);
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
    const r1 = await runCli(['eval', '--model', join(dir, 'a.safetensors'), '--data', join(dir, 'nope'), '--vocab', join(dir, 'vocab'), '--no-latency']);
    expectOneLineError(expect, r1, /data folder not found/);
    const r2 = await runCli(['eval', '--model', join(dir, 'vocab', 'clip-vocab.json'), '--data', join(dir, 'data'), '--vocab', join(dir, 'vocab'), '--no-latency']);
    expectOneLineError(expect, r2, /unknown checkpoint extension/);
  });
});
