import { describe, expect, test, beforeEach, afterEach, vi } from 'vitest';
import { mkdtempSync, readdirSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import yargs from 'yargs';
import { buildEmojiDataset, decodePng, emojiCaption, encodeIdx, readImageTextDataset, type ImageTextSample } from '../../src/base/data/index.js';
import { dataCommand } from '../../src/cli/commands/data.js';

const PACKAGES = ['emoji-datasource-google', 'emoji-datasource-twitter', 'emoji-datasource-facebook', 'emojibase-data'];
const req = createRequire(import.meta.url);
const missing = PACKAGES.filter((p) => {
  try {
    req.resolve(`${p}/package.json`);
    return false;
  } catch {
    return true;
  }
});
if (missing.length > 0) console.warn(`test/data/emoji.test.ts: skipping the emoji build tests: ${missing.join(', ')} not installed (npm install --save-optional ${PACKAGES.join(' ')})`);

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'mclip-emoji-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function collect(it: AsyncIterable<ImageTextSample>): Promise<ImageTextSample[]> {
  const out: ImageTextSample[] = [];
  for await (const s of it) out.push(s);
  return out;
}

test('emojiCaption', () => {
  expect(emojiCaption('GRINNING FACE')).toBe('grinning face');
  expect(emojiCaption('WAVING HAND SIGN', '1F3FD')).toBe('waving hand sign, medium skin tone');
  expect(emojiCaption('people holding hands', '1F3FB-1F3FC')).toBe('people holding hands, light skin tone, medium-light skin tone');
});

describe.skipIf(missing.length > 0)('emoji dataset (npm emoji-datasource-*, emojibase-data)', () => {
  test('grinning + wave (5 skin tones): per-vendor split, captions, labels, background pixels', async () => {
    const m = await buildEmojiDataset(dir, { only: ['grinning', 'wave'], samplesPerShard: 5, background: [0, 0, 255] });
    // 1 grinning + 1 wave + 5 toned waves = 7 per vendor
    expect(m.splits.train).toMatchObject({ samples: 14, shards: 3, groups: { google: 7, twitter: 7 } });
    expect(m.splits.eval).toMatchObject({ samples: 7, shards: 2, groups: { facebook: 7 } });
    expect(m.categories).toEqual(['People & Body', 'Smileys & Emotion']);
    expect(m.splits.eval.categories).toEqual({ 'Smileys & Emotion': 1, 'People & Body': 6 });
    expect(readdirSync(join(dir, 'eval'))).toEqual(['shard-000000.tar', 'shard-000001.tar']);

    const ev = await collect(readImageTextDataset(dir, 'eval'));
    expect(ev.map((s) => s.key)).toEqual(['facebook-1f600', 'facebook-1f44b', 'facebook-1f44b-1f3fb', 'facebook-1f44b-1f3fc', 'facebook-1f44b-1f3fd', 'facebook-1f44b-1f3fe', 'facebook-1f44b-1f3ff']);
    const g = ev[0];
    expect(g.caption).toBe('grinning face');
    expect(g.labels).toMatchObject({ category: 'Smileys & Emotion', subcategory: 'face-smiling', vendor: 'facebook', skin_tone: 'none' });
    expect(g.captions).toEqual(expect.arrayContaining(['an emoji of a grinning face', 'a grinning face emoji', 'smile', 'face-smiling']));
    expect(g.captions.length).toBeGreaterThanOrEqual(5);
    expect(new Set(g.captions.map((c) => c.toLowerCase())).size).toBe(g.captions.length);
    expect(g.captions.map((c) => c.toLowerCase())).not.toContain('grinning face');
    const w = ev[4];
    expect(w.caption).toBe('waving hand sign, medium skin tone');
    expect(w.captions).toEqual(expect.arrayContaining(['waving hand: medium skin tone', 'an emoji of a waving hand, medium skin tone', 'wave', 'hand-fingers-open']));
    expect(w.labels).toMatchObject({ category: 'People & Body', subcategory: 'hand-fingers-open', skin_tone: 'medium', unified: '1F44B-1F3FD' });

    const px = await decodePng(g.image);
    expect([px.width, px.height, px.channels]).toEqual([64, 64, 3]);
    expect([...px.data.subarray(0, 3)]).toEqual([0, 0, 255]); // transparent corner → background
    const tr = await collect(readImageTextDataset(dir, 'train'));
    expect(tr.map((s) => s.labels.vendor)).toEqual([...Array(7).fill('google'), ...Array(7).fill('twitter')]);
  });

  test('--limit 20 via the CLI command, eval vendor twitter, size 32', async () => {
    const log = vi.spyOn(console, 'log').mockImplementation(() => undefined);
    const err = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    try {
      await dataCommand(yargs().exitProcess(false).strict()).parseAsync(['data', 'emoji', '--out', dir, '--limit', '20', '--eval-vendor', 'twitter', '--size', '32', '--samples-per-shard', '100']);
      const out = JSON.parse(String(log.mock.calls.at(-1)?.[0])) as { samples: number; bytes: number; splits: Record<string, number> };
      // the first 20 emoji (smileys, no skin variants) exist for all three vendors
      expect(out.splits).toEqual({ train: 40, eval: 20 });
      expect(out.bytes).toBeGreaterThan(0);
      expect(String(err.mock.calls.at(-1)?.[0])).toMatch(/total 60 samples, .* MB .* built in/);
    } finally {
      log.mockRestore();
      err.mockRestore();
    }
    const ev = await collect(readImageTextDataset(dir, 'eval'));
    expect(ev.length).toBe(20);
    expect(ev.every((s) => s.labels.vendor === 'twitter' && s.captions.length >= 5)).toBe(true);
    expect((await decodePng(ev[0].image)).width).toBe(32);
  });

  test('bad vendor arguments → MclipError', async () => {
    await expect(buildEmojiDataset(dir, { evalVendor: 'apple' })).rejects.toThrow('--eval-vendor apple is not among --vendors google,twitter,facebook');
    await expect(buildEmojiDataset(dir, { vendors: ['google', 'nosuch'], evalVendor: 'google' })).rejects.toThrow(/emoji-datasource-nosuch is not installed; run: npm install/);
  });
});

test('fashion-mnist via the CLI command (tiny IDX)', async () => {
  const idx = join(dir, 'idx');
  mkdirSync(idx);
  writeFileSync(join(idx, 'train-images-idx3-ubyte.gz'), gzipSync(encodeIdx([2, 28, 28], new Uint8Array(2 * 784).fill(200))));
  writeFileSync(join(idx, 'train-labels-idx1-ubyte.gz'), gzipSync(encodeIdx([2], new Uint8Array([7, 5]))));
  writeFileSync(join(idx, 't10k-images-idx3-ubyte.gz'), gzipSync(encodeIdx([1, 28, 28], new Uint8Array(784).fill(3))));
  writeFileSync(join(idx, 't10k-labels-idx1-ubyte.gz'), gzipSync(encodeIdx([1], new Uint8Array([6]))));
  const log = vi.spyOn(console, 'log').mockImplementation(() => undefined);
  const err = vi.spyOn(console, 'error').mockImplementation(() => undefined);
  try {
    await dataCommand(yargs().exitProcess(false).strict()).parseAsync(['data', 'fashion-mnist', '--out', join(dir, 'out'), '--idx', idx]);
    expect(JSON.parse(String(log.mock.calls.at(-1)?.[0])).splits).toEqual({ train: 2, eval: 1 });
  } finally {
    log.mockRestore();
    err.mockRestore();
  }
  const tr = await collect(readImageTextDataset(join(dir, 'out'), 'train'));
  expect(tr.map((s) => s.caption)).toEqual(['a photo of a sneaker', 'a photo of a sandal']);
  const px = await decodePng(tr[0].image);
  expect([px.width, px.height, px.channels, px.data[0], px.data[2], px.data[784 * 3 - 1]]).toEqual([28, 28, 3, 200, 200, 200]);
  const ev = await collect(readImageTextDataset(join(dir, 'out'), 'eval'));
  expect(ev[0].labels).toEqual({ category: 'shirt', label: '6' });
});
