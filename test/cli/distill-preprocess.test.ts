/**
 * `mclip distill` with a live teacher whose image preprocessing is not the student's: refused in one line
 * (the teacher sees the student's batches, normalised by the student's spec).
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { initBackend } from '../../src/base/backend/index.js';
import { CLIP } from '../../src/base/model/clip.js';
import { saveModel } from '../../src/base/model/checkpoint.js';
import { microConfig } from '../micro-config.js';
import { buildColorDataset, each, writeColorVocab, type Rgb } from './color-data.js';
import { expectOneLineError, tempDir } from './helpers.js';
import { runMain } from './in-process.js';

const COLORS: Record<string, Rgb> = { red: [220, 30, 30], green: [30, 200, 40] };

describe('mclip distill: teacher and student preprocessing', () => {
  const tmp = tempDir('mclip-distill-pre-');
  const dir = tmp.dir;
  afterAll(() => tmp.cleanup());
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true });
    await buildColorDataset(join(dir, 'data'), { split: 'train', colors: each(COLORS, 2), size: 32, samplesPerShard: 8, shade: ([r, g, b], i) => [r, g - 5 * i, b], captions: (name) => [name, `the color ${name}`] });
    const vocabSize = writeColorVocab(join(dir, 'vocab'), Object.keys(COLORS).flatMap((c) => [`a ${c} square`, `the color ${c}`, c]));
    for (const [file, name] of [
      ['student.safetensors', null],
      ['s3.safetensors', 'fastvit_mci3'],
    ] as const) {
      const cfg = microConfig();
      cfg.text.vocabSize = vocabSize;
      if (name) cfg.image = { ...cfg.image, name };
      const m = new CLIP(cfg, { seed: 3 });
      saveModel(m, join(dir, file));
      m.dispose();
    }
  });

  test('an OpenAI-normalised teacher for an identity student is a one-line error', async () => {
    const r = await runMain(['distill', '--teacher', join(dir, 's3.safetensors'), '--init', join(dir, 'student.safetensors'), '--data', join(dir, 'data'), '--vocab', join(dir, 'vocab'), '--batch', '2', '--sparsity', '0', '--stage-steps', '2', '--teacher-engine', 'tfjs', '--out', join(dir, 'out')]);
    expectOneLineError(expect, r, /--teacher .*s3\.safetensors: its image preprocessing \(mean 0\.48145466\/.*bilinear\) is not the student's \(mean 0\/0\/0, std 1\/1\/1, bilinear\)/);
  });
});
