import { describe, expect, test, beforeEach, afterEach } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import {
  buildFashionMnistDataset,
  decodePng,
  decodeSample,
  dedupeCaptions,
  encodeIdx,
  encodeSample,
  grayToPng,
  parseIdx,
  parseRgb,
  readImageTextDataset,
  ShardWriter,
  type DatasetManifest,
  type ImageTextSample,
} from '../../src/base/data/index.js';
import { MclipError } from '../../src/errors.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'mclip-it-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function collect(it: AsyncIterable<ImageTextSample>): Promise<ImageTextSample[]> {
  const out: ImageTextSample[] = [];
  for await (const s of it) out.push(s);
  return out;
}

describe('sample encoding', () => {
  test('encode → decode round trip; captions de-duplicated case-insensitively, caption excluded', async () => {
    const png = await grayToPng(new Uint8Array([0, 64, 128, 255]), 2, 2);
    const m = encodeSample({ image: png, caption: 'A cat', captions: ['a cat', 'cat', 'Cat ', 'a  photo of a cat', 'A photo of a cat'], labels: { category: 'cat' } });
    expect([...m.keys()]).toEqual(['png', 'txt', 'json']);
    expect(JSON.parse(new TextDecoder().decode(m.get('json')))).toEqual({ captions: ['cat', 'a photo of a cat'], labels: { category: 'cat' }, source: {} });
    const d = decodeSample('k', m, 'x.tar');
    expect(d).toMatchObject({ key: 'k', caption: 'A cat', captions: ['cat', 'a photo of a cat'], labels: { category: 'cat' } });
    const px = await decodePng(d.image);
    expect([px.width, px.height, px.channels]).toEqual([2, 2, 3]);
    expect([...px.data]).toEqual([0, 0, 0, 64, 64, 64, 128, 128, 128, 255, 255, 255]);
  });

  test('decode errors name shard, key and member', () => {
    const m = new Map<string, Uint8Array>([['png', new Uint8Array([1, 2, 3])]]);
    expect(() => decodeSample('k1', m, 's.tar')).toThrow('s.tar: sample "k1" member "png": not a PNG file');
  });

  test('dedupeCaptions and parseRgb', () => {
    expect(dedupeCaptions(['Smile', 'smile', ' smile ', 'grin', ''], ['GRIN'])).toEqual(['Smile']);
    expect(parseRgb('255, 0,10')).toEqual([255, 0, 10]);
    expect(parseRgb('#0a0b0c')).toEqual([10, 11, 12]);
    expect(() => parseRgb('256,0,0')).toThrow(MclipError);
    expect(() => parseRgb('1,2')).toThrow(/--background/);
  });

  test('readImageTextDataset skips undecodable samples and counts them', async () => {
    const png = await grayToPng(new Uint8Array([7]), 1, 1);
    const w = new ShardWriter(join(dir, 'train'));
    await w.write('good', encodeSample({ image: png, caption: 'x', captions: [], labels: { category: 'c' } }));
    await w.write('badjson', { png, txt: 'y', json: '{"labels": 3}' });
    await w.write('nopng', { txt: 'z', json: '{}' });
    await w.close();
    const r = readImageTextDataset(dir, 'train');
    const got = await collect(r);
    expect(got.map((s) => s.key)).toEqual(['good']);
    expect(r.summary.samples).toBe(1);
    expect(r.summary.skipped).toBe(2);
    expect(r.summary.problems.map((p) => [p.key, p.member])).toEqual([
      ['badjson', undefined],
      ['nopng', 'png'],
    ]);
    expect(() => readImageTextDataset(dir, 'eval')).toThrow(/not found/);
  });
});

describe('IDX / Fashion-MNIST', () => {
  test('parseIdx: raw and gzip, header checks', () => {
    const raw = encodeIdx([2, 3], new Uint8Array([1, 2, 3, 4, 5, 6]));
    expect(parseIdx(raw)).toEqual({ dims: [2, 3], data: new Uint8Array([1, 2, 3, 4, 5, 6]) });
    expect(parseIdx(gzipSync(raw)).dims).toEqual([2, 3]);
    expect(() => parseIdx(raw.subarray(0, raw.length - 1), 'f.idx')).toThrow('f.idx: expected 6 data bytes for dims [2, 3], found 5');
    expect(() => parseIdx(new Uint8Array([1, 2, 3, 4]), 'g')).toThrow(/bad magic/);
  });

  test('build from a tiny IDX set: counts, captions, labels, pixels', async () => {
    const idx = join(dir, 'idx');
    mkdirSync(idx);
    const h = 3;
    const w = 4;
    // image k: pixel (y, x) = 50*k + 10*y + x
    const images = (n: number): Uint8Array => Uint8Array.from({ length: n * h * w }, (_, i) => 50 * Math.floor(i / (h * w)) + 10 * Math.floor((i % (h * w)) / w) + (i % w));
    writeFileSync(join(idx, 'train-images-idx3-ubyte.gz'), gzipSync(encodeIdx([5, h, w], images(5))));
    writeFileSync(join(idx, 'train-labels-idx1-ubyte'), encodeIdx([5], new Uint8Array([0, 9, 3, 0, 8])));
    writeFileSync(join(idx, 't10k-images-idx3-ubyte'), encodeIdx([2, h, w], images(2)));
    writeFileSync(join(idx, 't10k-labels-idx1-ubyte.gz'), gzipSync(encodeIdx([2], new Uint8Array([1, 2]))));
    const out = join(dir, 'out');
    const progress: number[] = [];
    const m = await buildFashionMnistDataset(out, { idx, samplesPerShard: 2, onProgress: (d) => progress.push(d) });
    expect(progress.at(-1)).toBe(7);
    expect(m.totalSamples).toBe(7);
    expect(m.splits.train).toMatchObject({ samples: 5, shards: 3, categories: { 't-shirt/top': 2, 'ankle boot': 1, dress: 1, bag: 1 } });
    expect(m.splits.eval).toMatchObject({ samples: 2, shards: 1, categories: { trouser: 1, pullover: 1 } });
    expect(m.categories).toEqual(['ankle boot', 'bag', 'dress', 'pullover', 't-shirt/top', 'trouser']);
    expect(m.image).toEqual({ width: 4, height: 3, channels: 3, format: 'png' });
    expect(readdirSync(join(out, 'train'))).toEqual(['shard-000000.tar', 'shard-000001.tar', 'shard-000002.tar']);
    const onDisk = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as DatasetManifest;
    expect(onDisk.totalBytes).toBe(m.splits.train.bytes + m.splits.eval.bytes);
    expect(onDisk.totalBytes).toBeGreaterThan(0);

    const train = await collect(readImageTextDataset(out, 'train'));
    expect(train.map((s) => s.key)).toEqual(['fmnist-train-000000', 'fmnist-train-000001', 'fmnist-train-000002', 'fmnist-train-000003', 'fmnist-train-000004']);
    expect(train[1].caption).toBe('a photo of an ankle boot');
    expect(train[0].caption).toBe('a photo of a t-shirt/top');
    expect(train[1].labels).toEqual({ category: 'ankle boot', label: '9' });
    expect(train[1].captions.length).toBeGreaterThanOrEqual(5);
    expect(train[1].captions).toContain('a black and white photo of an ankle boot');
    expect(new Set(train[1].captions.map((c) => c.toLowerCase())).size).toBe(train[1].captions.length);
    const px = await decodePng(train[2].image);
    expect([px.width, px.height, px.channels]).toEqual([4, 3, 3]);
    // image 2, pixel (y=1, x=3) = 100 + 10 + 3, same in R, G, B
    const o = (1 * w + 3) * 3;
    expect([px.data[o], px.data[o + 1], px.data[o + 2]]).toEqual([113, 113, 113]);
    expect(px.data[0]).toBe(100);
    const ev = await collect(readImageTextDataset(out, 'eval'));
    expect(ev.map((s) => s.labels.category)).toEqual(['trouser', 'pullover']);

    // rebuilding refuses to overwrite without force, and replaces with force
    await expect(buildFashionMnistDataset(out, { idx })).rejects.toThrow(/--force/);
    const m2 = await buildFashionMnistDataset(out, { idx, limit: 1, force: true });
    expect([m2.splits.train.samples, m2.splits.eval.samples]).toEqual([1, 1]);
    expect(readdirSync(join(out, 'train'))).toEqual(['shard-000000.tar']);
  });

  test('missing IDX files → MclipError naming the file and the apt package', async () => {
    await expect(buildFashionMnistDataset(join(dir, 'o'), { idx: dir })).rejects.toThrow(/train-images-idx3-ubyte\[\.gz\]: .*dataset-fashion-mnist/);
  });
});
