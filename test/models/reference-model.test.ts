/**
 * The shipped reference model (models/mclip-emoji.safetensors + models/vocab): it loads with no config
 * flag, its vocabulary is the one shipped beside it, and on emoji it was never trained on — the held-out
 * Facebook renderings of 48 emoji — it retrieves far above chance, through both engines.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dirname, join, resolve } from 'node:path';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { buildEmojiDataset } from '../../src/base/data/emoji.js';
import { loadModel } from '../../src/base/model/checkpoint.js';
import { ClipTokenizer } from '../../src/base/tokenizer/index.js';
import { initBackend } from '../../src/base/backend/index.js';
import { tempDir } from '../cli/helpers.js';
import { runMain } from '../cli/in-process.js';

const MODELS = resolve(import.meta.dirname, '..', '..', 'models');
const MODEL = join(MODELS, 'mclip-emoji.safetensors');
const VOCAB = join(MODELS, 'vocab');

interface Report {
  rows: Array<{ retrieval: { i2t: { r1: number; r10: number }; t2i: { r1: number; r10: number } } }>;
  meta: { samples?: number };
}

describe('the shipped reference model', () => {
  const tmp = tempDir('mclip-reference-');
  afterAll(() => tmp.cleanup());
  const data = join(tmp.dir, 'emoji');
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true });
    // 48 emoji spread over the sort order, without skin-tone variants; the eval split is the held-out vendor's renderings.
    const req = createRequire(import.meta.url);
    const list = JSON.parse(readFileSync(join(dirname(req.resolve('emoji-datasource-facebook/package.json')), 'emoji.json'), 'utf8')) as Array<{
      short_name: string;
      sort_order: number;
      has_img_facebook?: boolean;
      skin_variations?: unknown;
    }>;
    const plain = list.filter((e) => e.has_img_facebook && !e.skin_variations).sort((a, b) => a.sort_order - b.sort_order);
    const step = Math.floor(plain.length / 48);
    const names = Array.from({ length: 48 }, (_, i) => plain[i * step].short_name);
    await buildEmojiDataset(data, { vendors: ['google', 'facebook'], evalVendor: 'facebook', only: names });
  });

  it('loads with no --arch; its vocabulary matches the shipped tokenizer', async () => {
    const { model, config } = await loadModel(MODEL);
    expect(config.text.layers).toBeUndefined();
    const tok = ClipTokenizer.fromDir(VOCAB);
    expect(config.text.vocabSize).toBe(tok.vocabSize);
    expect(config.name).toBe('mobileclip_tiny');
    model.dispose();
  });

  for (const engine of ['ort', 'tfjs'] as const) {
    it(`retrieves held-out emoji far above chance (--engine ${engine})`, async () => {
      const json = join(tmp.dir, `eval-${engine}.json`);
      const r = await runMain(['eval', '--model', MODEL, '--data', data, '--split', 'eval', '--vocab', VOCAB, '--no-latency', '--engine', engine, '--json', json, '--quiet']);
      expect(r.status, r.stderr).toBe(0);
      const rep = JSON.parse(readFileSync(json, 'utf8')) as Report;
      const n = rep.meta.samples ?? 0;
      expect(n).toBeGreaterThanOrEqual(40);
      const { i2t, t2i } = rep.rows[0].retrieval;
      // Chance R@1 is 1/n (≈ 2 %), R@10 10/n (≈ 21 %).
      expect(i2t.r1).toBeGreaterThan(5 / n);
      expect(t2i.r1).toBeGreaterThan(5 / n);
      expect((i2t.r10 + t2i.r10) / 2).toBeGreaterThan(0.45);
    });
  }
});
