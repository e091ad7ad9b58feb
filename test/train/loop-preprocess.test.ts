import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { ShardWriter, encodeDrSample, encodeSample, mulberry32, rgbToPng, sampleAugParams } from '../../src/base/data/index.js';
import { trainVocab, ClipTokenizer, writeVocab } from '../../src/base/tokenizer/index.js';
import { ImageTextLoop, ReinforcedLoop, type LoopOptions } from '../../src/base/train/data-loop.js';
import { preprocessImage } from '../../src/base/preprocess/index.js';
import { IDENTITY_PREPROCESS, OPENAI_MEAN, OPENAI_STD, type PreprocessSpec } from '../../src/base/preprocess/spec.js';
import { imagesToFloat } from '../../src/base/reinforce/index.js';

const N = 6;
const SIZE = 32;
const OPENAI: PreprocessSpec = { mean: OPENAI_MEAN, std: OPENAI_STD, interpolation: 'bilinear' };
const OPENAI_BICUBIC: PreprocessSpec = { ...OPENAI, interpolation: 'bicubic' };

/** A 48×40 image with fine detail, so bilinear and bicubic downscales differ. */
function image(i: number): Uint8Array {
  const data = new Uint8Array(48 * 40 * 3);
  for (let p = 0; p < data.length; p++) data[p] = (p * (i + 3) + i * 29 + ((p * 7) % 13) * 11) % 251;
  return data;
}

interface Batch {
  px: Float32Array;
  gt: Int32Array;
  syn: Int32Array;
}

type Loop = ImageTextLoop | ReinforcedLoop;

function take(loop: Loop, tok: ClipTokenizer, batch = 4): Batch {
  const b = loop.next(batch, tok, 77);
  const out = { px: b.images.dataSync() as Float32Array, gt: b.gtTokens.dataSync() as Int32Array, syn: b.synTokens!.dataSync() as Int32Array };
  tf.dispose([b.images, b.gtTokens, b.synTokens!]);
  return out;
}

/** max |(identity − mean) / std − normalised| over an NHWC batch. */
function normalisedError(identity: Float32Array, normalised: Float32Array, spec: PreprocessSpec): number {
  let worst = 0;
  for (let i = 0; i < identity.length; i++) {
    const c = i % 3;
    worst = Math.max(worst, Math.abs((identity[i] - spec.mean[c]) / spec.std[c] - normalised[i]));
  }
  return worst;
}

describe('training loops: the trained model’s preprocessing', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mclip-loop-pre-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const pngs: Uint8Array[] = [];
  let tok: ClipTokenizer;

  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true, gradients: true });
    const plain = new ShardWriter(join(dir, 'plain', 'train'), { samplesPerShard: 4 });
    const dr = new ShardWriter(join(dir, 'dr', 'train'), { samplesPerShard: 4 });
    const rng = mulberry32(9);
    for (let i = 0; i < N; i++) {
      const png = await rgbToPng(image(i), 48, 40);
      pngs.push(png);
      await plain.write(`s${i}`, encodeSample({ image: png, caption: `caption ${i}`, captions: [`synthetic one ${i}`, `synthetic two ${i}`], labels: { category: `c${i}` } }));
      const pa = Array.from({ length: 3 }, () => sampleAugParams(rng, 48, 40));
      await dr.write(
        `s${i}`,
        encodeDrSample({
          key: `s${i}`,
          synText: [`synthetic one ${i}`],
          paramAug: pa,
          imageEmb: Float32Array.from({ length: 3 * 2 }, (_, k) => (k % 2 === 0 ? 1 : 0)),
          textEmb: Float32Array.from({ length: 2 * 2 }, (_, k) => (k % 2 === 0 ? 0 : 1)),
          embDim: 2,
          teachers: [{ name: 't', dim: 2, logitScale: 100 }],
          image: { format: 'png', bytes: png },
          caption: `caption ${i}`,
        }),
      );
    }
    await plain.close();
    await dr.close();
    writeVocab(join(dir, 'vocab'), trainVocab(Array.from({ length: N }, (_, i) => `caption ${i} synthetic one two ${i}`), 600));
    tok = ClipTokenizer.fromDir(join(dir, 'vocab'));
  });

  const loaders: Array<[string, (opts: LoopOptions) => Promise<Loop>]> = [
    ['ImageTextLoop', (o) => ImageTextLoop.load(join(dir, 'plain'), 'train', SIZE, o)],
    ['ReinforcedLoop', (o) => ReinforcedLoop.load(join(dir, 'dr'), 'train', SIZE, o)],
  ];

  for (const [name, load] of loaders) {
    test(`${name}: the identity spec is bit-identical to a default loop; the OpenAI spec is (identity − mean) / std`, async () => {
      const def = await load({ seed: 3 });
      const ident = await load({ seed: 3, preprocess: IDENTITY_PREPROCESS });
      const openai = await load({ seed: 3, preprocess: OPENAI });
      expect(def.preprocess).toEqual(IDENTITY_PREPROCESS);
      for (let step = 0; step < 3; step++) {
        const a = take(def, tok);
        const b = take(ident, tok);
        const c = take(openai, tok);
        expect(Buffer.from(b.px.buffer).equals(Buffer.from(a.px.buffer))).toBe(true);
        expect(Array.from(c.gt)).toEqual(Array.from(a.gt));
        expect(Array.from(c.syn)).toEqual(Array.from(a.syn));
        expect(normalisedError(a.px, c.px, OPENAI)).toBeLessThan(1e-6);
        // and it is not the identity: pixels moved by far more than the tolerance
        let moved = 0;
        for (let i = 0; i < a.px.length; i++) moved = Math.max(moved, Math.abs(c.px[i] - a.px[i]));
        expect(moved).toBeGreaterThan(0.5);
        for (const v of a.px) expect(v >= 0 && v <= 1).toBe(true);
      }
    });
  }

  test('ImageTextLoop: an identity batch is the inference transform (byte / 255) in NHWC', async () => {
    const loop = await ImageTextLoop.load(join(dir, 'plain'), 'train', SIZE, { seed: 0, limit: 1 });
    const { px } = take(loop, tok, 1);
    const chw = await preprocessImage(Buffer.from(pngs[0]), SIZE);
    const hw = SIZE * SIZE;
    for (let p = 0; p < hw; p++) for (let c = 0; c < 3; c++) expect(px[p * 3 + c]).toBe(chw[c * hw + p]);
  });

  test('ImageTextLoop: a bicubic spec resizes bicubic (valid, unlike bilinear), then normalises', async () => {
    const bil = await ImageTextLoop.load(join(dir, 'plain'), 'train', SIZE, { seed: 0, limit: 1, preprocess: OPENAI });
    const bic = await ImageTextLoop.load(join(dir, 'plain'), 'train', SIZE, { seed: 0, limit: 1, preprocess: OPENAI_BICUBIC });
    const a = take(bil, tok, 1).px;
    const b = take(bic, tok, 1).px;
    let differ = 0;
    for (let i = 0; i < a.length; i++) if (Math.abs(a[i] - b[i]) > 1e-6) differ++;
    expect(differ).toBeGreaterThan(a.length / 10);
    // the bicubic batch is the bicubic inference transform (preprocessImage with that spec), NHWC
    const ref = await preprocessImage(Buffer.from(pngs[0]), SIZE, OPENAI_BICUBIC);
    const hw = SIZE * SIZE;
    let worst = 0;
    for (let p = 0; p < hw; p++) for (let c = 0; c < 3; c++) worst = Math.max(worst, Math.abs(b[p * 3 + c] - ref[c * hw + p]));
    expect(worst).toBeLessThan(1e-6);
    for (let i = 0; i < b.length; i++) {
      const c = i % 3;
      expect(b[i]).toBeGreaterThanOrEqual((0 - OPENAI_MEAN[c]) / OPENAI_STD[c] - 1e-6);
      expect(b[i]).toBeLessThanOrEqual((1 - OPENAI_MEAN[c]) / OPENAI_STD[c] + 1e-6);
    }
  });

  test('imagesToFloat (the teachers’ input): identity by default, a spec normalises per channel in both layouts', () => {
    const img = { data: Uint8Array.from({ length: 4 * 4 * 3 }, (_, k) => (k * 37) % 256), width: 4, height: 4 };
    for (const nchw of [false, true]) {
      const plain = imagesToFloat([img], 4, nchw);
      expect(Buffer.from(imagesToFloat([img], 4, nchw, IDENTITY_PREPROCESS).buffer).equals(Buffer.from(plain.buffer))).toBe(true);
      const norm = imagesToFloat([img], 4, nchw, OPENAI);
      for (let p = 0; p < 16; p++)
        for (let c = 0; c < 3; c++) {
          const i = nchw ? c * 16 + p : p * 3 + c;
          expect(plain[i]).toBe(Math.fround(img.data[p * 3 + c] / 255));
          expect(Math.abs(norm[i] - (plain[i] - OPENAI_MEAN[c]) / OPENAI_STD[c])).toBeLessThan(1e-6);
        }
    }
  });
});
