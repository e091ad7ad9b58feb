import { describe, expect, test, beforeEach, afterEach } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readShards, ShardWriter, splitMemberName, type ShardSample } from '../../src/base/data/shards.js';
import { MclipError } from '../../src/errors.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'mclip-shards-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function collect(it: AsyncIterable<ShardSample>): Promise<ShardSample[]> {
  const out: ShardSample[] = [];
  for await (const s of it) out.push(s);
  return out;
}

const text = (b: Uint8Array | undefined): string => new TextDecoder().decode(b);

/** Writes `n` samples with a 1000-byte `bin` member (value i) and a `txt` member. */
async function writeSamples(out: string, n: number, perShard: number): Promise<string[]> {
  const w = new ShardWriter(out, { samplesPerShard: perShard });
  for (let i = 0; i < n; i++) await w.write(`s${String(i).padStart(3, '0')}`, { txt: `caption ${i}`, bin: new Uint8Array(1000).fill(i) });
  const r = await w.close();
  expect(r.samples).toBe(n);
  return r.shards;
}

describe('splitMemberName', () => {
  test('key ends at the first dot of the basename', () => {
    expect(splitMemberName('abc.png')).toEqual({ key: 'abc', member: 'png' });
    expect(splitMemberName('abc.syn.json')).toEqual({ key: 'abc', member: 'syn.json' });
    expect(splitMemberName('d.x/abc.seg.png')).toEqual({ key: 'd.x/abc', member: 'seg.png' });
    expect(splitMemberName('noext')).toBeUndefined();
    expect(splitMemberName('.hidden')).toBeUndefined();
  });
});

describe('ShardWriter / readShards', () => {
  test('round trip with roll-over every 3 samples', async () => {
    const shards = await writeSamples(dir, 7, 3);
    expect(readdirSync(dir).sort()).toEqual(['shard-000000.tar', 'shard-000001.tar', 'shard-000002.tar']);
    expect(shards.map((s) => s.slice(-16))).toEqual(['shard-000000.tar', 'shard-000001.tar', 'shard-000002.tar']);
    // each sample: txt (512 header + 512 block) + bin (512 + 1024); end-of-archive blocks after
    expect(statSync(shards[2]).size).toBeGreaterThanOrEqual(2560 + 1024);
    const r = readShards(dir, { required: ['txt', 'bin'] });
    const got = await collect(r);
    expect(got.map((s) => s.key)).toEqual(['s000', 's001', 's002', 's003', 's004', 's005', 's006']);
    expect(got.map((s) => s.shard.slice(-8))).toEqual(['0000.tar', '0000.tar', '0000.tar', '0001.tar', '0001.tar', '0001.tar', '0002.tar']);
    expect(text(got[4].members.get('txt'))).toBe('caption 4');
    expect(got[4].members.get('bin')!.length).toBe(1000);
    expect(got[4].members.get('bin')![999]).toBe(4);
    expect([...got[0].members.keys()]).toEqual(['txt', 'bin']);
    expect(r.summary).toEqual({ shards: 3, samples: 7, skipped: 0, problems: [], problemCount: 0 });
    // reading a list of files gives the same samples
    expect((await collect(readShards([shards[1], shards[0]]))).map((s) => s.key)).toEqual(['s003', 's004', 's005', 's000', 's001', 's002']);
  });

  test('identical input gives byte-identical shards', async () => {
    const a = join(dir, 'a');
    const b = join(dir, 'b');
    await writeSamples(a, 4, 10);
    await writeSamples(b, 4, 10);
    expect(readFileSync(join(a, 'shard-000000.tar')).equals(readFileSync(join(b, 'shard-000000.tar')))).toBe(true);
  });

  test('no temporary files are left and bad keys are refused', async () => {
    const w = new ShardWriter(dir, { samplesPerShard: 2 });
    await w.write('a', { txt: 'x' });
    expect(readdirSync(dir).filter((f) => f.endsWith('.tar'))).toEqual([]); // shard still open: only the temp file
    expect(readdirSync(dir).filter((f) => f.includes('.tmp-')).length).toBe(1);
    await expect(w.write('a', { txt: 'y' })).rejects.toThrow(/written twice/);
    await expect(w.write('b.c', { txt: 'y' })).rejects.toThrow(MclipError);
    await w.close();
    expect(readdirSync(dir)).toEqual(['shard-000000.tar']);
  });

  test('truncated shard: complete samples kept, the cut sample reported with key and member, next shard still read', async () => {
    const shards = await writeSamples(dir, 6, 3);
    const buf = readFileSync(shards[0]);
    // sample = 2560 bytes; cut inside the 1000-byte "bin" member of the second sample (s001)
    writeFileSync(shards[0], buf.subarray(0, 2560 + 1024 + 512 + 300));
    const problems: string[] = [];
    const r = readShards(dir, { required: ['txt', 'bin'], onProblem: (p) => problems.push(p.key ?? '') });
    const got = await collect(r);
    expect(got.map((s) => s.key)).toEqual(['s000', 's003', 's004', 's005']);
    expect(r.summary.samples).toBe(4);
    expect(r.summary.skipped).toBe(1);
    expect(r.summary.problems).toHaveLength(1);
    expect(r.summary.problems[0]).toMatchObject({ shard: shards[0], key: 's001', member: 'bin' });
    expect(r.summary.problems[0].reason).toMatch(/truncated/);
    expect(problems).toEqual(['s001']);
  });

  test('shard cut between samples: the last sample before the cut is reported as possibly incomplete', async () => {
    const shards = await writeSamples(dir, 3, 3);
    writeFileSync(shards[0], readFileSync(shards[0]).subarray(0, 2 * 2560 + 100)); // inside the 3rd sample's first header
    const r = readShards(dir, { required: ['txt', 'bin'] });
    const got = await collect(r);
    expect(got.map((s) => s.key)).toEqual(['s000']);
    expect(r.summary.skipped).toBe(1);
    expect(r.summary.problems[0]).toMatchObject({ key: 's001' });
  });

  test('garbage file is reported, not thrown', async () => {
    await writeSamples(dir, 2, 5);
    writeFileSync(join(dir, 'shard-000001.tar'), Buffer.alloc(1024, 7));
    const r = readShards(dir);
    expect((await collect(r)).length).toBe(2);
    expect(r.summary.problems).toHaveLength(1);
    expect(r.summary.problems[0].shard).toMatch(/shard-000001\.tar$/);
    expect(r.summary.skipped).toBe(0);
  });

  test('sample missing a required member is skipped and reported (shard, key, member)', async () => {
    const w = new ShardWriter(dir);
    await w.write('a', { png: new Uint8Array([1]), txt: 'one', json: '{}' });
    await w.write('b', { png: new Uint8Array([2]), json: '{}' });
    await w.write('c', { png: new Uint8Array([3]), txt: 'three', json: '{}' });
    await w.close();
    const r = readShards(dir, { required: ['png', 'txt', 'json'] });
    const got = await collect(r);
    expect(got.map((s) => s.key)).toEqual(['a', 'c']);
    expect(r.summary).toMatchObject({ samples: 2, skipped: 1, problemCount: 1 });
    expect(r.summary.problems[0]).toMatchObject({ shard: join(dir, 'shard-000000.tar'), key: 'b', member: 'txt' });
    // without `required` the sample is yielded
    expect((await collect(readShards(dir))).length).toBe(3);
  });

  test('empty or missing folder → MclipError', () => {
    const empty = join(dir, 'empty');
    mkdirSync(empty);
    expect(() => readShards(empty)).toThrow(MclipError);
    expect(() => readShards(empty)).toThrow(/no \.tar shards/);
    expect(() => readShards(join(dir, 'nope'))).toThrow(/not found/);
    expect(() => readShards([])).toThrow(MclipError);
  });
});
