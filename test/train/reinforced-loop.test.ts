import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { ShardWriter, applyAug, encodeDrSample, mulberry32, rgbToPng, sampleAugParams, type AugParams } from '../../src/base/data/index.js';
import { trainVocab, ClipTokenizer, writeVocab } from '../../src/base/tokenizer/index.js';
import { ReinforcedLoop } from '../../src/base/train/data-loop.js';
import { Trainer } from '../../src/base/train/trainer.js';
import { CLIP } from '../../src/base/model/clip.js';
import { microConfig } from '../micro-config.js';

const N = 8;
const AUGS = 3;
const D = 4; // two teachers of width 2

/** Unit rows [cos θ, sin θ] per teacher: θ encodes (sample, augmentation) so the test can decode which row was used. */
function row(theta: number): number[] {
  return [Math.cos(theta), Math.sin(theta), Math.cos(theta + 1), Math.sin(theta + 1)];
}

describe('ReinforcedLoop: stored augmentations and teacher rows stay paired', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mclip-dr-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const images: Array<{ data: Uint8Array; width: number; height: number }> = [];
  const params: AugParams[][] = [];
  let tok: ClipTokenizer;

  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true, gradients: true });
    const w = new ShardWriter(join(dir, 'train'), { samplesPerShard: 4 });
    const rng = mulberry32(5);
    for (let i = 0; i < N; i++) {
      const data = new Uint8Array(48 * 40 * 3);
      for (let p = 0; p < data.length; p++) data[p] = (p * (i + 3) + i * 29) % 251;
      const img = { data, width: 48, height: 40 };
      images.push(img);
      const pa = Array.from({ length: AUGS }, () => sampleAugParams(rng, 48, 40));
      params.push(pa);
      const imageEmb = Float32Array.from(pa.flatMap((_, a) => row(i * 0.1 + a * 0.01)));
      const textEmb = Float32Array.from([0, 1, 2].flatMap((k) => row(i * 0.1 + 0.5 + k * 0.01)));
      await w.write(
        `s${i}`,
        encodeDrSample({
          key: `s${i}`,
          synText: [`synthetic one ${i}`, `synthetic two ${i}`],
          paramAug: pa,
          imageEmb,
          textEmb,
          embDim: D,
          teachers: [
            { name: 'a', dim: 2, logitScale: 100 },
            { name: 'b', dim: 2, logitScale: 50 },
          ],
          image: { format: 'png', bytes: await rgbToPng(data, 48, 40) },
          caption: `caption ${i}`,
        }),
      );
    }
    await w.close();
    const v = trainVocab(Array.from({ length: N }, (_, i) => `caption ${i} synthetic one two ${i}`), 600);
    writeVocab(join(dir, 'vocab'), v);
    tok = ClipTokenizer.fromDir(join(dir, 'vocab'));
  });

  test('each image is its stored augmentation replayed, with that augmentation’s and caption’s teacher rows', async () => {
    const loop = await ReinforcedLoop.load(dir, 'train', 32, { seed: 1 });
    expect(loop.length).toBe(N);
    expect(loop.teachers).toEqual([
      { dim: 2, logitScale: 100 },
      { dim: 2, logitScale: 50 },
    ]);
    const b = loop.next(4, tok, 77);
    const px = b.images.dataSync();
    for (let r = 0; r < 4; r++) {
      const t = Math.atan2(b.teacherImg![r * D + 1], b.teacherImg![r * D]);
      const i = Math.round(t / 0.1 - 0.049);
      const a = Math.round((t - i * 0.1) / 0.01);
      const view = applyAug(images[i], params[i][a], 32);
      for (let p = 0; p < view.data.length; p += 97) expect(px[r * 32 * 32 * 3 + p]).toBeCloseTo(view.data[p] / 255, 6);
      const g = Math.atan2(b.teacherGt![r * D + 1], b.teacherGt![r * D]);
      expect(g).toBeCloseTo(i * 0.1 + 0.5, 5);
      const k = Math.round((Math.atan2(b.teacherSyn![r * D + 1], b.teacherSyn![r * D]) - (i * 0.1 + 0.5)) / 0.01);
      expect([1, 2]).toContain(k);
      const ids = Array.from(b.synTokens!.dataSync().slice(r * 77, r * 77 + 77));
      expect(tok.decode(ids)).toBe(`synthetic ${k === 1 ? 'one' : 'two'} ${i}`);
    }
    tf.dispose([b.images, b.gtTokens, b.synTokens!]);
  });

  test('λ = 1 training on stored teachers runs with a flat tensor count and finite losses', async () => {
    const loop = await ReinforcedLoop.load(dir, 'train', 32, { seed: 2 });
    // Every block type of mobileclip_tiny at micro widths (test/micro-config.ts), 32×32 like the loop.
    const cfg = microConfig();
    cfg.text.vocabSize = tok.vocabSize;
    expect(cfg.image.imageSize).toBe(32);
    const model = new CLIP(cfg, { seed: 4 });
    const trainer = new Trainer(model, { lr: 1e-3, totalSteps: 4, lambda: 1, teachers: loop.teachers });
    const run = () => {
      const b = loop.next(4, tok, cfg.text.contextLength);
      try {
        return trainer.step(b).loss;
      } finally {
        tf.dispose([b.images, b.gtTokens, b.synTokens!]);
      }
    };
    run();
    const before = tf.memory().numTensors;
    const losses = [run(), run(), run()];
    expect(tf.memory().numTensors).toBe(before);
    for (const l of losses) expect(Number.isFinite(l) && l > 0).toBe(true);
    trainer.dispose();
    model.dispose();
  });
});
