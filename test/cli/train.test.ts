import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { buildColorDataset, each, writeColorVocab, type Rgb } from './color-data.js';
import { tempDir, expectOneLineError } from './helpers.js';
import { runMain } from './in-process.js';
import { initBackend } from '../../src/base/backend/index.js';
import { CLIP } from '../../src/base/model/clip.js';
import { getConfig, mciStages } from '../../src/base/model/configs.js';
import { loadModel, saveModel } from '../../src/base/model/checkpoint.js';

const COLORS: Record<string, Rgb> = { red: [220, 30, 30], green: [30, 200, 40], blue: [30, 40, 220], gray: [128, 128, 128] };

interface Metric {
  step: number;
  loss: number;
  lr: number;
}

function metrics(dir: string): Metric[] {
  return readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Metric);
}

describe('mclip train', () => {
  const tmp = tempDir('mclip-train-');
  const dir = tmp.dir;
  afterAll(() => tmp.cleanup());
  beforeAll(async () => {
    await buildColorDataset(join(dir, 'data'), {
      split: 'train', colors: each(COLORS, 4), size: 40, samplesPerShard: 8,
      shade: ([r, g, b], i) => [r, g - 5 * i, b], captions: (name) => [name, `the color ${name}`],
    });
    vocabSize = writeColorVocab(join(dir, 'vocab'), Object.keys(COLORS).flatMap((c) => [`a ${c} square`, `the color ${c}`, c]));
  });
  let vocabSize = 0;

  test('an interrupted and resumed run gives the same losses and the same model as an uninterrupted one', async () => {
    // Small on purpose (a process spends ~3 s starting up, a mobileclip_tiny step ~0.6 s at batch 2): 3 steps,
    // interrupted after the first. All three runs go in-process (a spawned node costs ~3 s): each builds its
    // model, optimiser and data loop anew, so the resume continues only from what the stopped run left on disk.
    const common = ['train', '--data', join(dir, 'data'), '--vocab', join(dir, 'vocab'), '--steps', '3', '--batch', '2', '--save-every', '1', '--lr', '2e-3', '--seed', '3'];
    const split = async () => {
      const part = await runMain([...common, '--out', join(dir, 'split'), '--stop-after', '1']);
      const modelAfterStop = existsSync(join(dir, 'split', 'model.safetensors'));
      return { part, modelAfterStop, resumed: part.status === 0 ? await runMain([...common, '--out', join(dir, 'split'), '--resume']) : null };
    };
    const [full, { part, modelAfterStop, resumed }] = await Promise.all([runMain([...common, '--out', join(dir, 'full')]), split()]);
    expect(full.status, full.stderr).toBe(0);
    expect(part.status, part.stderr).toBe(0);
    expect(part.stderr).toMatch(/stopped after step 1 of 3/);
    expect(modelAfterStop).toBe(false);
    expect(resumed!.status, resumed!.stderr).toBe(0);
    expect(resumed!.stderr).toMatch(/resumed at step 1/);
    const a = metrics(join(dir, 'full'));
    const b = metrics(join(dir, 'split'));
    expect(a.map((m) => m.step)).toEqual([1, 2, 3]);
    expect(b.map((m) => m.step)).toEqual([1, 2, 3]);
    for (let i = 0; i < 3; i++) {
      expect(Math.abs(a[i].loss - b[i].loss) / a[i].loss, `step ${i + 1}`).toBeLessThan(1e-6);
      expect(a[i].lr).toBe(b[i].lr);
    }
    expect(readFileSync(join(dir, 'full', 'model.safetensors')).equals(readFileSync(join(dir, 'split', 'model.safetensors')))).toBe(true);
  });

  test('a student from mclip inherit trains from --init and resumes from its own checkpoint (no --arch)', async () => {
    await initBackend({ backend: 'wasm', quiet: true });
    const cfg = getConfig('mobileclip_tiny');
    cfg.text.vocabSize = vocabSize;
    const teacher = new CLIP(cfg, { seed: 2 });
    saveModel(teacher, join(dir, 'teacher.safetensors'));
    teacher.dispose();
    const student = join(dir, 'student.safetensors');
    const inh = await runMain(['inherit', '--from', join(dir, 'teacher.safetensors'), '--out', student, '--text-layers', '1', '--text-width', '64', '--text-heads', '2', '--image-widths', '8,16,32,64']);
    expect(inh.status, inh.stderr).toBe(0);
    const common = ['train', '--data', join(dir, 'data'), '--vocab', join(dir, 'vocab'), '--steps', '2', '--batch', '2', '--save-every', '1', '--out', join(dir, 'student-run')];
    const part = await runMain([...common, '--init', student, '--stop-after', '1']);
    expect(part.status, part.stderr).toBe(0);
    const resumed = await runMain([...common, '--resume']);
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(metrics(join(dir, 'student-run')).map((m) => m.step)).toEqual([1, 2]);
    const done = await loadModel(join(dir, 'student-run', 'model.safetensors'));
    expect(done.config.text.dim).toBe(64);
    expect(done.config.text.nTransformerLayers).toBe(1);
    expect(done.config.image.kind === 'mci' && mciStages(done.config.image).map((s) => s.width)).toEqual([8, 16, 32, 64]);
    done.model.dispose();
  });

  test('--workers 2: data-parallel training says so, and a stopped and resumed run equals an uninterrupted one', async () => {
    const common = ['train', '--data', join(dir, 'data'), '--vocab', join(dir, 'vocab'), '--steps', '2', '--batch', '4', '--save-every', '1', '--lr', '2e-3', '--seed', '5', '--workers', '2'];
    const full = await runMain([...common, '--out', join(dir, 'dp-full')]);
    expect(full.status, full.stderr).toBe(0);
    expect(full.stderr).toMatch(/training on 2 workers \(this thread \+ 1 worker thread, data-parallel/);
    const part = await runMain([...common, '--out', join(dir, 'dp-split'), '--stop-after', '1']);
    expect(part.status, part.stderr).toBe(0);
    const resumed = await runMain([...common, '--out', join(dir, 'dp-split'), '--resume']);
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(metrics(join(dir, 'dp-split')).map((m) => m.loss)).toEqual(metrics(join(dir, 'dp-full')).map((m) => m.loss));
    expect(readFileSync(join(dir, 'dp-full', 'model.safetensors')).equals(readFileSync(join(dir, 'dp-split', 'model.safetensors')))).toBe(true);
  });

  test('bad arguments are one-line errors', async () => {
    const r1 = await runMain(['train', '--data', join(dir, 'nope'), '--vocab', join(dir, 'vocab'), '--out', join(dir, 'x')]);
    expectOneLineError(expect, r1, /data folder not found/);
    const r2 = await runMain(['train', '--data', join(dir, 'data'), '--vocab', join(dir, 'vocab'), '--out', join(dir, 'x'), '--batch', '0']);
    expectOneLineError(expect, r2, /--batch must be a positive integer/);
  });
});
