import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { CLIP, l2normalize } from '../../src/base/model/clip.js';
import { saveModel } from '../../src/base/model/checkpoint.js';
import { openTeacher, imagesToFloat } from '../../src/base/reinforce/index.js';
import { IDENTITY_PREPROCESS, OPENAI_MEAN, OPENAI_STD } from '../../src/base/preprocess/spec.js';
import { microConfig } from '../micro-config.js';

/** A checkpoint teacher sees the augmented images normalised by its own spec (preprocessFor of its config). */
describe('checkpoint teachers: their own preprocessing', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mclip-teacher-pre-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const images = Array.from({ length: 2 }, (_, i) => ({ data: Uint8Array.from({ length: 32 * 32 * 3 }, (_, k) => (k * (i + 5) + 17 * i) % 256), width: 32, height: 32 }));

  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true });
    for (const [file, name] of [
      ['plain.safetensors', null],
      ['s3.safetensors', 'fastvit_mci3'],
    ] as const) {
      const cfg = microConfig();
      if (name) cfg.image = { ...cfg.image, name }; // same micro tower, MobileCLIP2-S3's table entry
      const m = new CLIP(cfg, { seed: 3 });
      m.eval();
      saveModel(m, join(dir, file));
      m.dispose();
    }
  });

  test('an identity teacher embeds [0, 1] pixels; an S3-named one embeds (x − OpenAI mean) / std', async () => {
    const plain = await openTeacher(join(dir, 'plain.safetensors'));
    const s3 = await openTeacher(join(dir, 's3.safetensors'));
    try {
      expect(plain.preprocess).toEqual(IDENTITY_PREPROCESS);
      expect(s3.preprocess).toEqual({ mean: OPENAI_MEAN, std: OPENAI_STD, interpolation: 'bilinear' });
      const a = await plain.embedImages(images);
      const b = await s3.embedImages(images);
      // reference: the same weights on the normalised pixels, through the plain teacher's model path
      const cfg = microConfig();
      const m = new CLIP(cfg, { seed: 3 });
      m.eval();
      const ref = (px: Float32Array): Float32Array => tf.tidy(() => l2normalize(m.encodeImage(tf.tensor4d(px, [2, 32, 32, 3]))).dataSync() as Float32Array);
      const want = ref(imagesToFloat(images, 32, false, s3.preprocess!));
      const ident = ref(imagesToFloat(images, 32, false));
      m.dispose();
      let dPlain = 0;
      let dS3 = 0;
      let apart = 0;
      for (let i = 0; i < a.length; i++) {
        dPlain = Math.max(dPlain, Math.abs(a[i] - ident[i]));
        dS3 = Math.max(dS3, Math.abs(b[i] - want[i]));
        apart = Math.max(apart, Math.abs(a[i] - b[i]));
      }
      expect(dPlain).toBeLessThan(1e-4);
      expect(dS3).toBeLessThan(1e-4);
      expect(apart).toBeGreaterThan(20 * Math.max(dPlain, dS3, 1e-6));
    } finally {
      await plain.dispose();
      await s3.dispose();
    }
  });
});
