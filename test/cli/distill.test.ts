/**
 * `mclip distill`: progressive TinyCLIP stages on the text tower from the command line — a micro student
 * and teacher, two stages; every stage leaves stage-K/model.safetensors (a smaller model that loads with no
 * config) and a stages.jsonl line; a rerun skips finished stages; bad input gives one-line errors.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { initBackend } from '../../src/base/backend/index.js';
import { CLIP } from '../../src/base/model/clip.js';
import { loadModel, saveModel } from '../../src/base/model/checkpoint.js';
import { parseSparsities, type StageLine } from '../../src/cli/commands/distill.js';
import { microConfig } from '../micro-config.js';
import { buildColorDataset, each, writeColorVocab, type Rgb } from './color-data.js';
import { expectOneLineError, show, tempDir } from './helpers.js';
import { runMain } from './in-process.js';

const COLORS: Record<string, Rgb> = { red: [220, 30, 30], green: [30, 200, 40], blue: [30, 40, 220], gray: [128, 128, 128] };

describe('mclip distill', () => {
  const tmp = tempDir('mclip-distill-');
  const dir = tmp.dir;
  afterAll(() => tmp.cleanup());
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true });
    await buildColorDataset(join(dir, 'data'), {
      split: 'train', colors: each(COLORS, 4), size: 32, samplesPerShard: 8,
      shade: ([r, g, b], i) => [r, g - 5 * i, b], captions: (name) => [name, `the color ${name}`],
    });
    const vocabSize = writeColorVocab(join(dir, 'vocab'), Object.keys(COLORS).flatMap((c) => [`a ${c} square`, `the color ${c}`, c]));
    const cfg = microConfig();
    cfg.text.vocabSize = vocabSize;
    const m = new CLIP(cfg, { seed: 3 });
    saveModel(m, join(dir, 'student.safetensors'));
    m.dispose();
  });
  const common = () => ['distill', '--teacher', join(dir, 'student.safetensors'), '--init', join(dir, 'student.safetensors'), '--data', join(dir, 'data'), '--vocab', join(dir, 'vocab'), '--batch', '4'];

  test('two stages leave smaller models and a stages.jsonl line each; a rerun skips them', async () => {
    const out = join(dir, 'out');
    const r = await runMain([...common(), '--sparsity', '0.25,0.5', '--stage-steps', '10', '--out', out]);
    expect(r.status, show(r)).toBe(0);
    const lines = readFileSync(join(out, 'stages.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as StageLine);
    expect(lines.map((l) => [l.stage, l.target])).toEqual([[1, 0.25], [2, 0.5]]);
    for (const l of lines) {
      expect(l.reached).toBeGreaterThan(0);
      expect(l.reached).toBeCloseTo(1 - l.prunable.after / l.prunable.initial, 10);
    }
    expect(lines[1].reached).toBeGreaterThan(lines[0].reached);
    expect(lines[1].params).toBeLessThan(lines[0].params);
    // the defaults are printed at the start
    expect(r.stderr).toMatch(/10 steps a stage: 6 of mask learning \(--mask-fraction 0\.6\), target ramp 3 steps/);
    const { model } = await loadModel(join(out, 'stage-2', 'model.safetensors'), {});
    expect(model.numParams()).toBe(lines[1].params);
    model.dispose();
    const again = await runMain([...common(), '--sparsity', '0.25,0.5', '--stage-steps', '10', '--out', out]);
    expect(again.status, show(again)).toBe(0);
    expect(again.stderr).toMatch(/stage 1: .* exists, skipped/);
    expect(again.stderr).toMatch(/stage 2: .* exists, skipped/);
    expect(readFileSync(join(out, 'stages.jsonl'), 'utf8').trim().split('\n')).toHaveLength(2);
  });

  test('bad stage lists, targets outside (0, 1), an unreadable or missing teacher: one-line errors', async () => {
    expect(parseSparsities('0.25, 0.5,0.75')).toEqual([0.25, 0.5, 0.75]);
    for (const [s, why] of [['0.5,0.25', /must increase/], ['0.25,1', /in \(0, 1\)/], ['-0.1', /in \(0, 1\)/], ['a,b', /comma-separated numbers/], ['0.25,,0.5', /comma-separated numbers/]] as const) {
      const r = await runMain([...common(), '--sparsity', s, '--out', join(dir, 'bad')]);
      expectOneLineError(expect, r, why, 2);
    }
    const junk = join(dir, 'vocab', 'clip-merges.txt');
    const r = await runMain(['distill', '--teacher', junk, '--init', join(dir, 'student.safetensors'), '--data', join(dir, 'data'), '--vocab', join(dir, 'vocab'), '--sparsity', '0.5', '--out', join(dir, 'bad2')]);
    expectOneLineError(expect, r, /--teacher .*clip-merges\.txt: cannot be read as a model/);
    const n = await runMain(['distill', '--init', join(dir, 'student.safetensors'), '--data', join(dir, 'data'), '--vocab', join(dir, 'vocab'), '--sparsity', '0.5', '--out', join(dir, 'bad3')]);
    expectOneLineError(expect, n, /--teacher is needed unless --reinforced/, 2);
    expect(existsSync(join(dir, 'bad3', 'stages.jsonl'))).toBe(false);
  });
});
