import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeDrSample, encodeDrSample, readDrDataset, embRow, type DrSample, type TeacherInfo } from '../../src/base/data/datacompdr.js';
import { mulberry32, sampleAugParams } from '../../src/base/data/augment.js';
import { writeNpz, floatToHalf } from '../../src/base/data/npz.js';
import { ShardWriter } from '../../src/base/data/shards.js';
import { MclipError } from '../../src/errors.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'mclip-dr-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const enc = new TextEncoder();
const TEACHERS: TeacherInfo[] = [
  { name: 'a', dim: 4, logitScale: 100 },
  { name: 'b', dim: 6, logitScale: 70 },
];

/** rows × Σdim, each teacher slice L2-normalised. */
function emb(rng: () => number, rows: number, dims: number[]): Float32Array {
  const D = dims.reduce((a, b) => a + b, 0);
  const out = new Float32Array(rows * D);
  for (let r = 0; r < rows; r++) {
    let off = 0;
    for (const d of dims) {
      let s = 0;
      for (let k = 0; k < d; k++) s += (out[r * D + off + k] = rng() - 0.5) ** 2;
      for (let k = 0; k < d; k++) out[r * D + off + k] /= Math.sqrt(s);
      off += d;
    }
  }
  return out;
}

const PNG = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0]);

function synthetic(key: string, seed: number, nAug = 3, nSyn = 5): DrSample {
  const rng = mulberry32(seed);
  return {
    key,
    url: `https://example.com/${key}.jpg`,
    uid: 'f'.repeat(32),
    sha256: 'a'.repeat(64),
    synText: Array.from({ length: nSyn }, (_, i) => `synthetic caption ${i}`),
    paramAug: Array.from({ length: nAug }, () => sampleAugParams(rng, 320, 240)),
    imageEmb: emb(rng, nAug, [4, 6]),
    textEmb: emb(rng, 1 + nSyn, [4, 6]),
    embDim: 10,
    teachers: TEACHERS,
    image: { format: 'png', bytes: PNG },
    caption: 'a ground-truth caption',
  };
}

describe('DataCompDR samples', () => {
  test('encode → shards → readDrDataset round trip', async () => {
    const w = new ShardWriter(dir, { samplesPerShard: 2 });
    const samples = [synthetic('000000001', 1), synthetic('000000002', 2, 30), synthetic('000000003', 3, 1, 0)];
    for (const s of samples) await w.write(s.key, encodeDrSample(s));
    await w.close();
    const reader = readDrDataset(dir);
    const got: DrSample[] = [];
    for await (const s of reader) got.push(s);
    expect(reader.summary.skipped).toBe(0);
    expect(got.map((s) => s.key)).toEqual(samples.map((s) => s.key));
    for (let i = 0; i < got.length; i++) {
      const { image, ...a } = got[i];
      const { image: imgB, ...b } = samples[i];
      expect(a).toEqual(b);
      expect([...image!.bytes]).toEqual([...imgB!.bytes]);
    }
    expect([...embRow(got[1].textEmb, 10, 0)]).toEqual([...embRow(samples[1].textEmb, 10, 0)]);
  });

  test('member names and layouts are DataCompDR\'s', () => {
    const m = encodeDrSample(synthetic('k', 4));
    expect([...m.keys()].sort()).toEqual(['json', 'npz', 'paug.json', 'png', 'syn.json', 'teachers.json', 'txt', 'url.txt']);
    const j = (k: string): unknown => JSON.parse(new TextDecoder().decode(m.get(k)));
    expect(j('json')).toEqual({ uid: 'f'.repeat(32), sha256: 'a'.repeat(64) });
    expect(Object.keys(j('syn.json') as object)).toEqual(['syn_text']);
    expect(Array.isArray((j('paug.json') as { param_aug: unknown }).param_aug)).toBe(true);
    expect(j('teachers.json')).toEqual({ teachers: [{ name: 'a', dim: 4, logit_scale: 100 }, { name: 'b', dim: 6, logit_scale: 70 }] });
  });

  test('hand-built DataCompDR sample: param_aug as a JSON string, 1536-wide float16 embeddings, no teachers.json', () => {
    const rng = mulberry32(9);
    const paug = [
      [[10, 20, 200, 150], [[5, -9.0], [11, 178.5]]],
      [[0, 0, 240, 320], null],
    ];
    const half = (a: Float32Array): Uint16Array => Uint16Array.from(a, floatToHalf);
    const members = new Map<string, Uint8Array>([
      ['url.txt', enc.encode('http://img.example/x.jpg\n')],
      ['json', enc.encode(JSON.stringify({ uid: '0123456789abcdef0123456789abcdef', sha256: 'deadbeef' }))],
      ['syn.json', enc.encode(JSON.stringify({ syn_text: ['a', 'b', 'c', 'd', 'e'] }))],
      ['paug.json', enc.encode(JSON.stringify({ param_aug: JSON.stringify(paug) }))],
      [
        'npz',
        writeNpz(
          {
            image_emb: { dtype: 'float16', shape: [2, 1536], data: half(emb(rng, 2, [768, 768])) },
            text_emb: { dtype: 'float32', shape: [6, 1536], data: emb(rng, 6, [768, 768]) },
          },
          { compress: true },
        ),
      ],
    ]);
    const s = decodeDrSample('000123', members, { shard: '00000000.tar' });
    expect(s.url).toBe('http://img.example/x.jpg');
    expect(s.uid).toBe('0123456789abcdef0123456789abcdef');
    expect(s.paramAug).toEqual(paug);
    expect(s.embDim).toBe(1536);
    expect(s.imageEmb.length).toBe(2 * 1536);
    expect(s.teachers).toBeUndefined();
    expect(s.image).toBeUndefined();
    // concatenated norm √2
    const row = embRow(s.textEmb, 1536, 3);
    expect(Math.sqrt(row.reduce((a, v) => a + v * v, 0))).toBeCloseTo(Math.SQRT2, 4);
  });

  test('mismatched shapes → one-line MclipError naming shard, key, member', () => {
    const s = synthetic('bad', 5);
    const m = encodeDrSample(s);
    m.set('syn.json', enc.encode(JSON.stringify({ syn_text: ['only one'] })));
    expect(() => decodeDrSample('bad', m, { shard: 's.tar' })).toThrow(/^s\.tar: sample "bad" member "npz": text_emb has 6 rows of 10, expected 1 \+ n_syn = 2/);
    const m2 = encodeDrSample(s);
    m2.set('paug.json', enc.encode(JSON.stringify({ param_aug: s.paramAug.slice(1) })));
    expect(() => decodeDrSample('bad', m2)).toThrow(/image_emb has 3 rows of 10, expected n_aug = 2/);
    expect(() => encodeDrSample({ ...s, imageEmb: s.imageEmb.subarray(10) })).toThrow(MclipError);
    const m3 = encodeDrSample(s);
    m3.set('teachers.json', enc.encode(JSON.stringify({ teachers: [{ name: 'x', dim: 3, logit_scale: 1 }] })));
    expect(() => decodeDrSample('bad', m3)).toThrow(/teacher dims 3 = 3, expected the embedding width 10/);
    try {
      decodeDrSample('bad', m);
    } catch (e) {
      expect((e as Error).message).not.toContain('\n');
    }
  });

  test('un-normalised teacher slice is reported; the check can be relaxed', () => {
    const s = synthetic('n', 6);
    const m = encodeDrSample(s);
    const broken = { ...s, imageEmb: s.imageEmb.slice() };
    for (let k = 4; k < 10; k++) broken.imageEmb[10 + k] *= 2; // row 1, teacher "b"
    m.set('npz', writeNpz({ image_emb: { dtype: 'float32', shape: [3, 10], data: broken.imageEmb }, text_emb: { dtype: 'float32', shape: [6, 10], data: s.textEmb } }));
    expect(() => decodeDrSample('n', m)).toThrow(/image_emb: row 1 teacher "b" slice \[4:10\) has L2 norm 2\.0000 \(expected 1 ± 0\.02/);
    expect(decodeDrSample('n', m, { normTolerance: false }).imageEmb[14]).toBeCloseTo(broken.imageEmb[14]);
  });

  test('bad members: invalid paug string, missing npz array, bad record; reader skips and reports', async () => {
    const s = synthetic('x', 7);
    const m = encodeDrSample(s);
    m.set('paug.json', enc.encode(JSON.stringify({ param_aug: '[[1,2' })));
    expect(() => decodeDrSample('x', m)).toThrow(/"param_aug" is a string but not valid JSON/);
    m.set('paug.json', enc.encode(JSON.stringify({ param_aug: [[[0, 0, 1], null]] })));
    expect(() => decodeDrSample('x', m)).toThrow(/member "paug\.json" record 0: bad RRC box/);
    const m2 = encodeDrSample(s);
    m2.set('npz', writeNpz({ image_emb: { dtype: 'float32', shape: [3, 10], data: s.imageEmb } }));
    expect(() => decodeDrSample('x', m2)).toThrow(/no "text_emb" array \(has: image_emb\)/);

    const w = new ShardWriter(dir);
    await w.write('good', encodeDrSample(synthetic('good', 8)));
    await w.write('bad', m2);
    const noNpz = encodeDrSample(synthetic('nonpz', 9));
    noNpz.delete('npz');
    await w.write('nonpz', noNpz);
    await w.close();
    const r = readDrDataset(dir);
    const keys: string[] = [];
    for await (const d of r) keys.push(d.key);
    expect(keys).toEqual(['good']);
    expect(r.summary.skipped).toBe(2);
    expect(r.summary.problems.map((p) => p.key)).toEqual(['bad', 'nonpz']);
    expect(r.summary.samples).toBe(1);
  });
});
