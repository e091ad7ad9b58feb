/**
 * `--shard i/N` on `mclip reinforce` and `mclip eval`, and `mclip merge-results` (issue 10, item 3):
 * N parts cover the input exactly once; the merged parts equal the unsharded output (reinforce: the
 * same shard bytes and reinforce.json; eval: the same zero-shot and retrieval figures, exactly);
 * bad --shard values are usage errors naming the flag; incomplete or mismatched parts are refused.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { cpSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { colorEvalSetup, each, type Rgb } from './color-data.js';
import { expectOneLineError, tempDir } from './helpers.js';
import { runMain } from './in-process.js';
import { parseShard, shardRange } from '../../src/cli/shard.js';
import { UsageError } from '../../src/cli/usage.js';

const COLORS: Record<string, Rgb> = { red: [220, 30, 30], green: [30, 200, 40], blue: [30, 40, 220] };

describe('--shard i/N and merge-results', () => {
  const tmp = tempDir('mclip-shard-');
  const dir = tmp.dir;
  const env = { MCLIP_BACKEND: 'wasm', MCLIP_CACHE_DIR: join(dir, 'cache'), MCLIP_VOCAB: undefined };
  afterAll(() => tmp.cleanup());
  beforeAll(async () => {
    // 9 samples (red, green, blue × 3) in 3 input shards of 4, 4, 1
    await colorEvalSetup(dir, each(COLORS, 3), 16);
  });

  const reinforce = (out: string, ...extra: string[]) =>
    runMain(['reinforce', '--data', join(dir, 'data'), '--split', 'eval', '--teacher', join(dir, 'a.safetensors'), '--augs', '2', '--batch', '4', '--syn', '1', '--engine', 'tfjs', '--vocab', join(dir, 'vocab'), '--quiet', '--out', join(dir, out), ...extra], env);
  const evaluate = (json: string, ...extra: string[]) =>
    runMain(['eval', '--model', `A=${join(dir, 'a.safetensors')}`, '--model', `B=${join(dir, 'b.safetensors')}`, '--data', join(dir, 'data'), '--vocab', join(dir, 'vocab'), '--batch', '4', '--engine', 'tfjs', '--no-latency', '--quiet', '--json', join(dir, json), ...extra], env);
  const merge = (...args: string[]) => runMain(['merge-results', ...args], env);
  const bytes = (folder: string): Record<string, string> =>
    Object.fromEntries(
      readdirSync(join(dir, folder))
        .sort()
        .map((f) => [f, readFileSync(join(dir, folder, f)).toString('base64')]),
    );

  test('parseShard takes i/N with 0 ≤ i < N; N parts of shardRange cover every item exactly once, in whole units', () => {
    expect(parseShard('3/8')).toEqual({ index: 3, count: 8 });
    expect(parseShard('0/1')).toEqual({ index: 0, count: 1 });
    expect(parseShard(undefined)).toBeUndefined();
    for (const bad of ['2/2', 'a/b', '0/0', '1', '', '-1/2', '1/2/3', '0.5/2']) expect(() => parseShard(bad)).toThrow(UsageError);
    expect(() => parseShard('2/2')).toThrow(/^--shard: INDEX must be below COUNT \(0 … 1 for \/2\), got '2\/2'$/);
    for (const [count, unit] of [
      [0, 1],
      [1, 1],
      [9, 1],
      [9, 4],
      [100, 32],
      [1001, 7],
    ])
      for (const n of [1, 2, 3, 7, 16]) {
        const seen = new Array<number>(count).fill(0);
        let next = 0;
        for (let i = 0; i < n; i++) {
          const r = shardRange(count, { index: i, count: n }, unit);
          expect(r.start).toBe(next); // contiguous, in order
          if (r.end < count) expect(r.end % unit).toBe(0); // whole units
          for (let k = r.start; k < r.end; k++) seen[k]++;
          next = r.end;
        }
        expect(next).toBe(count);
        expect(seen.every((c) => c === 1)).toBe(true);
      }
    // balanced: 9 items in units of 4 (3 units) over 2 parts → 1 and 2 units
    expect([0, 1].map((i) => shardRange(9, { index: i, count: 2 }, 4))).toEqual([
      { start: 0, end: 4 },
      { start: 4, end: 9 },
    ]);
  });

  test('bad --shard values are one-line usage errors naming the flag (reinforce and eval)', async () => {
    for (const bad of ['2/2', 'a/b', '0/0', '1']) {
      const r = await reinforce('bad', '--shard', bad);
      expectOneLineError(expect, r, new RegExp(`^mclip: usage error: --shard: .*got '${bad}' \\(see mclip reinforce --help\\)$`), 2);
      const e = await evaluate('bad.json', '--shard', bad);
      expectOneLineError(expect, e, new RegExp(`^mclip: usage error: --shard: .*got '${bad}' \\(see mclip eval --help\\)$`), 2);
    }
    expectOneLineError(expect, await reinforce('bad', '--shard', '0/4'), /--shard 0\/4: part 0 would be empty: the input has only 3 input shards in .*, so use at most 3 parts/);
    const noJson = await runMain(['eval', '--model', join(dir, 'a.safetensors'), '--data', join(dir, 'data'), '--shard', '0/2'], env);
    expectOneLineError(expect, noJson, /^mclip: usage error: --shard 0\/2 needs --json PART\.json/, 2);
    expectOneLineError(expect, await evaluate('bad.json', '--shard', '0/2', '--plot', join(dir, 'p.svg')), /^mclip: usage error: --plot: not with --shard/, 2);
  });

  test('reinforce --shard 0/2 + 1/2, merged: the unsharded run’s shards and reinforce.json, byte for byte', async () => {
    const whole = await reinforce('dr');
    expect(whole.status, whole.stderr).toBe(0);
    expect(readdirSync(join(dir, 'dr')).sort()).toEqual(['reinforce.json', 'shard-000000.tar', 'shard-000001.tar', 'shard-000002.tar']);
    for (const i of [0, 1]) {
      const r = await reinforce(`dr-${i}`, '--shard', `${i}/2`);
      expect(r.status, r.stderr).toBe(0);
    }
    // part 0: input shard 0 (4 samples); part 1: shards 1, 2 (5 samples)
    expect(readdirSync(join(dir, 'dr-0')).sort()).toEqual(['reinforce-shard.json', 'reinforce.json', 'shard-000000.tar']);
    expect(readdirSync(join(dir, 'dr-1')).sort()).toEqual(['reinforce-shard.json', 'reinforce.json', 'shard-000001.tar', 'shard-000002.tar']);
    // a rerun of a part resumes (skips its finished shards); another part into the same folder is refused
    const again = await reinforce('dr-1', '--shard', '1/2');
    expect(again.status, again.stderr).toBe(0);
    expectOneLineError(expect, await reinforce('dr-1', '--shard', '0/2'), /dr-1: holds part 1\/2 of a sharded run, not 0\/2/);
    expectOneLineError(expect, await reinforce('dr-1'), /dr-1: holds part 1\/2 of a sharded run; pass --shard 1\/2 to resume it/);
    const m = await merge(join(dir, 'dr-1'), join(dir, 'dr-0'), '--out', join(dir, 'dr-merged'));
    expect(m.status, m.stderr).toBe(0);
    expect(m.stderr).toMatch(/merged 2 reinforce parts \(3 shards of 3\)/);
    expect(bytes('dr-merged')).toEqual(bytes('dr'));
  });

  test('merge-results refuses missing, doubled, unfinished and mismatched reinforce parts in one line', async () => {
    const out = join(dir, 'never');
    expectOneLineError(expect, await merge(join(dir, 'dr-0'), '--out', out), /^mclip: error: missing part 1\/2: got 1 of 2 parts$/);
    expectOneLineError(expect, await merge(join(dir, 'dr-0'), join(dir, 'dr-0'), '--out', out), /part 0\/2 given twice: .*dr-0 and .*dr-0$/);
    cpSync(join(dir, 'dr-1'), join(dir, 'dr-1-cut'), { recursive: true });
    rmSync(join(dir, 'dr-1-cut', 'shard-000002.tar'));
    expectOneLineError(expect, await merge(join(dir, 'dr-0'), join(dir, 'dr-1-cut'), '--out', out), /dr-1-cut \(part 1\/2\) is incomplete: 1 of 2 output shards missing \(first: shard-000002\.tar\); rerun its job/);
    cpSync(join(dir, 'dr-1'), join(dir, 'dr-1-augs'), { recursive: true });
    const settings = JSON.parse(readFileSync(join(dir, 'dr-1-augs', 'reinforce.json'), 'utf8')) as { augs: number };
    writeFileSync(join(dir, 'dr-1-augs', 'reinforce.json'), JSON.stringify({ ...settings, augs: 3 }));
    expectOneLineError(expect, await merge(join(dir, 'dr-0'), join(dir, 'dr-1-augs'), '--out', out), /dr-1-augs \(part 1\/2\) differs from .*dr-0 \(part 0\/2\) in augs: 3 ≠ 2$/);
    cpSync(join(dir, 'dr-1'), join(dir, 'dr-1-of-3'), { recursive: true });
    const part = JSON.parse(readFileSync(join(dir, 'dr-1-of-3', 'reinforce-shard.json'), 'utf8')) as { count: number };
    writeFileSync(join(dir, 'dr-1-of-3', 'reinforce-shard.json'), JSON.stringify({ ...part, count: 3 }));
    expectOneLineError(expect, await merge(join(dir, 'dr-0'), join(dir, 'dr-1-of-3'), '--out', out), /dr-1-of-3 \(part 1\/3\) and .*dr-0 \(part 0\/2\) are parts of different splits/);
    expectOneLineError(expect, await merge(join(dir, 'dr-0'), join(dir, 'dr-1'), '--out', join(dir, 'dr')), /dr: not empty; merge into a new folder/);
    expectOneLineError(expect, await merge(join(dir, 'data'), '--out', out), /data: not a part of a sharded reinforce run/);
  });

  test('eval --shard 0/2 + 1/2, merged: exactly the unsharded zero-shot and retrieval figures (two models)', async () => {
    const whole = await evaluate('whole.json');
    expect(whole.status, whole.stderr).toBe(0);
    for (const i of [0, 1]) {
      const r = await evaluate(`part-${i}.json`, '--shard', `${i}/2`);
      expect(r.status, r.stderr).toBe(0);
      expect(r.stdout).toBe(''); // a part prints no table
    }
    const part = (i: number) => JSON.parse(readFileSync(join(dir, `part-${i}.json`), 'utf8')) as { range: { start: number; end: number }; models: { images: { n: number } }[] };
    // 9 samples in batches of 4: part 0 = batch 0, part 1 = batches 1 and 2
    expect([0, 1].map((i) => part(i).range)).toEqual([
      { start: 0, end: 4 },
      { start: 4, end: 9 },
    ]);
    expect(part(1).models[0].images.n).toBe(5);
    const m = await merge(join(dir, 'part-1.json'), join(dir, 'part-0.json'), '--out', join(dir, 'merged.json'), '--plot', join(dir, 'merged.svg'));
    expect(m.status, m.stderr).toBe(0);
    expect(m.stdout).toBe(whole.stdout); // the same table
    interface Report {
      meta: Record<string, unknown>;
      baselines: unknown;
      rows: Array<{ name: string; zeroShot: { top1: number; top5: number }; retrieval: { i2t: { r1: number; r5: number; r10: number }; t2i: { r1: number } } }>;
    }
    const read = (f: string) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as Report;
    const a = read('whole.json');
    const b = read('merged.json');
    expect(b.rows).toEqual(a.rows); // params, MACs (textPresent too), zero-shot, retrieval: exact
    expect(b.rows.map((r) => r.name)).toEqual(['A', 'B']);
    expect(b.rows[0].zeroShot.top1 * 9).toBeCloseTo(Math.round(b.rows[0].zeroShot.top1 * 9), 9);
    expect(b.baselines).toEqual(a.baselines);
    const { engines: _e1, ...metaA } = a.meta;
    const { engines: _e2, shards, ...metaB } = b.meta;
    expect(metaB).toEqual(metaA);
    expect(shards).toBe(2);
    expect(readFileSync(join(dir, 'merged.svg'), 'utf8').match(/<circle/g)?.length).toBe(2);
  });

  test('merge-results refuses missing and mismatched eval parts in one line', async () => {
    const out = join(dir, 'never.json');
    expectOneLineError(expect, await merge(join(dir, 'part-1.json'), '--out', out), /^mclip: error: missing part 0\/2: got 1 of 2 parts$/);
    const p1 = JSON.parse(readFileSync(join(dir, 'part-1.json'), 'utf8')) as { config: Record<string, unknown> };
    writeFileSync(join(dir, 'part-1-b8.json'), JSON.stringify({ ...p1, config: { ...p1.config, batch: 8 } }));
    expectOneLineError(expect, await merge(join(dir, 'part-0.json'), join(dir, 'part-1-b8.json'), '--out', out), /part-1-b8\.json \(part 1\/2\) differs from .*part-0\.json \(part 0\/2\) in batch: 8 ≠ 4$/);
    writeFileSync(join(dir, 'part-1-keys.json'), JSON.stringify({ ...p1, config: { ...p1.config, keys: 'f'.repeat(64) } }));
    expectOneLineError(expect, await merge(join(dir, 'part-0.json'), join(dir, 'part-1-keys.json'), '--out', out), /\(part 1\/2\) differs from .* in keys: /);
    expectOneLineError(expect, await merge(join(dir, 'whole.json'), '--out', out), /whole\.json: not an mclip-eval-part file/);
    expectOneLineError(expect, await merge(join(dir, 'part-0.json'), join(dir, 'dr-0'), '--out', out), /^mclip: usage error: mixed parts: /, 2);
  });
});
