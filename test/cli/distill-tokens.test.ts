/**
 * `mclip distill --sparsity 0` with the token flags: the student's text tower fine-tunes with the reducers
 * active. Keep 1 is bit-identical to no flags (the reducers are no-ops there, the training is the same);
 * pruning changes the trained weights (the gradient flows through the kept tokens, so the text tower learns
 * something else); the flags are recorded in the checkpoint's metadata; a masked stage refuses them.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { initBackend } from '../../src/base/backend/index.js';
import { CLIP } from '../../src/base/model/clip.js';
import { saveModel } from '../../src/base/model/checkpoint.js';
import { readSafetensors } from '../../src/base/io/safetensors.js';
import { toFloat32 } from '../../src/base/io/tensor-data.js';
import { microConfig } from '../micro-config.js';
import { relErr } from '../model/helpers.js';
import { buildColorDataset, each, writeColorVocab, type Rgb } from './color-data.js';
import { expectOneLineError, show, tempDir } from './helpers.js';
import { runMain } from './in-process.js';

const COLORS: Record<string, Rgb> = { red: [220, 30, 30], green: [30, 200, 40], blue: [30, 40, 220], gray: [128, 128, 128] };

describe('mclip distill with text-token reducers', () => {
  const tmp = tempDir('mclip-distill-tokens-');
  const dir = tmp.dir;
  afterAll(() => tmp.cleanup());
  const student = join(dir, 'student.safetensors');
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true });
    await buildColorDataset(join(dir, 'data'), {
      split: 'train', colors: each(COLORS, 4), size: 32, samplesPerShard: 8,
      shade: ([r, g, b], i) => [r, g - 5 * i, b], captions: (name) => [`a bright ${name} square on a plain field`, `the color ${name}`],
    });
    const vocabSize = writeColorVocab(join(dir, 'vocab'), Object.keys(COLORS).flatMap((c) => [`a bright ${c} square on a plain field`, `the color ${c}`, c]));
    // a causal tower of two transformer layers: tokens pruned after layer 0 reach layer 1
    const cfg = microConfig('mobileclip_tiny_base');
    cfg.text = { ...cfg.text, vocabSize, nTransformerLayers: 2 };
    const m = new CLIP(cfg, { seed: 3 });
    saveModel(m, student);
    m.dispose();
  });
  const run = async (name: string, flags: string[]) => {
    const out = join(dir, name);
    const r = await runMain(['distill', '--teacher', student, '--init', student, '--data', join(dir, 'data'), '--vocab', join(dir, 'vocab'), '--batch', '4', '--sparsity', '0', '--stage-steps', '4', '--teacher-engine', 'tfjs', '--out', out, ...flags]);
    expect(r.status, show(r)).toBe(0);
    const f = readSafetensors(join(out, 'stage-1', 'model.safetensors'));
    const text = (k: string) => toFloat32(f.tensors.get(k)!);
    return { r, f, text };
  };

  test('keep 1 trains bit-identically to no flags; pruning changes the text tower; the flags are in the metadata', async () => {
    const plain = await run('plain', []);
    const keep1 = await run('keep1', ['--prune-layers', '0', '--keep', '1']);
    const keys = [...plain.f.tensors.keys()];
    expect(keys.length).toBeGreaterThan(10);
    for (const k of keys) expect(keep1.text(k), k).toEqual(plain.text(k));
    expect(plain.f.metadata['mclip.text_tokens']).toBeUndefined();
    const pruned = await run('pruned', ['--prune-layers', '0', '--keep', '0.5']);
    expect(pruned.f.metadata['mclip.text_tokens']).toBe('--prune-layers 0 --keep 0.5');
    expect(pruned.r.stderr).toMatch(/the student's text tower trains with --prune-layers 0 --keep 0\.5 \(the teacher unreduced\)/);
    // layer 1 trains on the kept tokens only: its weights move differently from the plain run's
    const layer1 = keys.filter((k) => k.startsWith('text_encoder.transformer.1.'));
    expect(layer1.length).toBeGreaterThan(0);
    const moved = Math.max(...layer1.map((k) => relErr(plain.text(k), pruned.text(k))));
    expect(moved).toBeGreaterThan(1e-3); // measured 0.23
  });

  test('a masked stage refuses the token flags', async () => {
    const r = await runMain(['distill', '--teacher', student, '--init', student, '--data', join(dir, 'data'), '--vocab', join(dir, 'vocab'), '--sparsity', '0.5', '--out', join(dir, 'never'), '--prune-layers', '0', '--keep', '0.5']);
    expectOneLineError(expect, r, /--text-padding \/ --prune-layers \/ --merge-layers: only with --sparsity 0/, 2);
  });
});
