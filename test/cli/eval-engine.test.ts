/**
 * `mclip eval --engine ort|tfjs`: the same zero-shot and retrieval figures from onnxruntime (the
 * checkpoint's cached, verified ONNX export) as from tfjs on a 64-sample split; the export is made
 * once and reused; a fallback to tfjs says why.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { colorEvalSetup, each, type Rgb } from './color-data.js';
import { tempDir } from './helpers.js';
import { runMain } from './in-process.js';

const COLORS: Record<string, Rgb> = { red: [220, 30, 30], yellow: [220, 220, 30], magenta: [210, 40, 200], white: [235, 235, 235] };

interface Report {
  meta: { samples: number; engine: string; engines: Array<{ model: string; engine: string; requested: string; fallback?: string; cache?: string; onnx?: string; samplesPerSecond: number }> };
  rows: Array<{ zeroShot: { top1: number; top5: number }; retrieval: { i2t: object; t2i: object }; latency?: { ort?: object } }>;
}

describe('mclip eval --engine', () => {
  const tmp = tempDir('mclip-eval-engine-');
  const dir = tmp.dir;
  const cache = join(dir, 'cache');
  const env = { MCLIP_BACKEND: 'wasm', MCLIP_CACHE_DIR: cache, MCLIP_VOCAB: undefined };
  const base = (json: string) => ['eval', '--model', `a=${join(dir, 'a.safetensors')}`, '--data', join(dir, 'data'), '--vocab', join(dir, 'vocab'), '--batch', '32', '--json', join(dir, json)];
  const read = (json: string) => JSON.parse(readFileSync(join(dir, json), 'utf8')) as Report;
  afterAll(() => tmp.cleanup());
  beforeAll(async () => {
    await colorEvalSetup(dir, each(COLORS, 16), 16);
  });

  test('ort and tfjs give the same zero-shot and retrieval figures on 64 samples', async () => {
    const t = await runMain([...base('t.json'), '--engine', 'tfjs', '--no-latency'], env);
    expect(t.status, t.stderr).toBe(0);
    expect(t.stderr).toMatch(/^mclip: a: engine tfjs \(tfjs wasm, 1 thread\)$/m);
    const o = await runMain([...base('o.json'), '--no-latency'], env); // ort is the default
    expect(o.status, o.stderr).toBe(0);
    expect(o.stderr).toMatch(/^mclip: a: engine ort \(onnxruntime-node [\d.]+ CPU, 2 threads; exported, verified .* and cached in .*cache\/onnx\/mobileclip_tiny-[0-9a-f]{24}\)$/m);
    expect(o.stderr).toMatch(/^mclip: a: top-1 [\d.]+ % in [\d.]+ s \(ort: 64 samples embedded in [\d.]+ s, [\d.]+ samples\/s\)$/m);
    const rt = read('t.json');
    const ro = read('o.json');
    expect(rt.meta.samples).toBe(64);
    expect(rt.meta.engines[0]).toMatchObject({ model: 'a', engine: 'tfjs', requested: 'tfjs' });
    expect(ro.meta.engine).toBe('ort');
    expect(ro.meta.engines[0]).toMatchObject({ model: 'a', engine: 'ort', requested: 'ort', cache: 'created' });
    expect(ro.meta.engines[0].samplesPerSecond).toBeGreaterThan(0);
    expect(ro.rows[0].zeroShot).toEqual(rt.rows[0].zeroShot);
    expect(ro.rows[0].retrieval).toEqual(rt.rows[0].retrieval);
    // 4 classes × 16: accuracy is a multiple of 1/64
    expect(Math.abs(ro.rows[0].zeroShot.top1 * 64 - Math.round(ro.rows[0].zeroShot.top1 * 64))).toBeLessThan(1e-9);

  });

  test('the second ort run reuses the cached export (nothing written); another checkpoint gets its own entry', async () => {
    const first = await runMain([...base('o1.json'), '--sample', '8', '--no-latency'], env); // 'created' unless the test above ran
    expect(first.status, first.stderr).toBe(0);
    const entry = read('o1.json').meta.engines[0].onnx!;
    const mtime = statSync(join(entry, 'image.onnx')).mtimeMs;
    const again = await runMain([...base('o2.json'), '--sample', '8', '--no-latency'], env);
    expect(again.status, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/^mclip: a: engine ort \(.*; cached export .*mobileclip_tiny-[0-9a-f]{24}\)$/m);
    const r2 = read('o2.json');
    expect(r2.meta.engines[0]).toMatchObject({ engine: 'ort', cache: 'hit', onnx: entry });
    expect(statSync(join(entry, 'image.onnx')).mtimeMs).toBe(mtime);
    expect(readdirSync(join(cache, 'onnx'))).toEqual([entry.split('/').pop()]);
    expect(r2.rows[0].zeroShot).toEqual(read('o1.json').rows[0].zeroShot);

    // model b (another checkpoint): a second entry
    const b = await runMain(['eval', '--model', `b=${join(dir, 'b.safetensors')}`, '--data', join(dir, 'data'), '--vocab', join(dir, 'vocab'), '--sample', '8', '--no-latency', '--json', join(dir, 'b.json')], env);
    expect(b.status, b.stderr).toBe(0);
    expect(read('b.json').meta.engines[0]).toMatchObject({ engine: 'ort', cache: 'created' });
    expect(readdirSync(join(cache, 'onnx')).length).toBe(2);
  });

  test('ORT latency reuses the cached export; the latency line still names both engines', async () => {
    const r = await runMain([...base('l.json'), '--sample', '4', '--latency-runs', '1'], env);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^latency: tfjs wasm \(@tensorflow\/tfjs-backend-wasm, 1 thread\); ORT onnxruntime-node CPU \(2 threads\); median of 1 runs/m);
    expect(read('l.json').rows[0].latency?.ort).toBeDefined();
  });

  test('an unwritable cache: tfjs runs, and the one-line reason says so (also under --quiet)', async () => {
    const blocked = join(dir, 'not-a-folder');
    writeFileSync(blocked, 'x');
    const r = await runMain([...base('f.json'), '--sample', '8', '--no-latency', '--quiet'], { ...env, MCLIP_CACHE_DIR: blocked });
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stderr.split('\n').filter((l) => /: engine /.test(l));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^mclip: a: engine tfjs instead of ort: cannot write the ONNX cache .*not-a-folder\/onnx \(ENOTDIR; set \$MCLIP_CACHE_DIR to a writable folder\)$/);
    expect(read('f.json').meta.engines[0]).toMatchObject({ engine: 'tfjs', requested: 'ort', fallback: expect.stringMatching(/^cannot write the ONNX cache/) });
  });
});
