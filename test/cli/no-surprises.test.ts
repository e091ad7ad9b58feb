/**
 * No silent surprises (issue 8, item 4) and progress with ETA (item 3): train refuses an --out that holds a
 * run, --force starts over, a kill + --resume leaves each step once in metrics.jsonl, train announces how long
 * --steps will take, reinforce reports inside a shard, vocab and data warn when they deliver less than asked.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { initBackend } from '../../src/base/backend/index.js';
import { CLIP } from '../../src/base/model/clip.js';
import { getConfig } from '../../src/base/model/configs.js';
import { saveModel } from '../../src/base/model/checkpoint.js';
import { buildColorDataset, each, writeColorVocab, type Rgb } from './color-data.js';
import { errorLines, expectOneLineError, runCli, show, tempDir } from './helpers.js';
import { runMain } from './in-process.js';

const COLORS: Record<string, Rgb> = { red: [220, 30, 30], green: [30, 200, 40], blue: [30, 40, 220], gray: [128, 128, 128] };

function steps(dir: string): number[] {
  return readFileSync(join(dir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { step: number }).step);
}

describe('no silent surprises', () => {
  const tmp = tempDir('surprises');
  const dir = tmp.dir;
  const data = join(dir, 'data');
  const vocab = join(dir, 'vocab');
  let vocabSize = 0;
  afterAll(() => tmp.cleanup());
  beforeAll(async () => {
    await buildColorDataset(data, {
      split: 'train', colors: each(COLORS, 4), size: 32, samplesPerShard: 8,
      shade: ([r, g, b], i) => [r, g - 5 * i, b], captions: (name) => [name, `the color ${name}`],
    });
    vocabSize = writeColorVocab(vocab, Object.keys(COLORS).flatMap((c) => [`a ${c} square`, `the color ${c}`, c]));
  });
  // Batch 2: a mobileclip_tiny step costs about half of batch 4, and nothing here depends on the batch.
  const train = (out: string, ...extra: string[]) => ['train', '--data', data, '--vocab', vocab, '--out', out, '--batch', '2', '--seed', '3', ...extra];

  it('train refuses an --out holding a run without --resume or --force; --force starts over; the two exclude each other', async ({ expect }) => {
    const out = join(dir, 'refuse');
    const first = await runMain(train(out, '--steps', '1'));
    expect(first.status, show(first)).toBe(0);
    expect(steps(out)).toEqual([1]);
    const again = await runMain(train(out, '--steps', '2'));
    expectOneLineError(expect, again, /refuse already holds a run \(metrics\.jsonl, checkpoints, model\.safetensors\): continue it with --resume, or start over with --force/);
    expect(steps(out)).toEqual([1]);
    const both = await runMain(train(out, '--steps', '2', '--resume', '--force'));
    expectOneLineError(expect, both, /--resume and --force exclude each other/);
    const forced = await runMain(train(out, '--steps', '2', '--force'));
    expect(forced.status, show(forced)).toBe(0);
    expect(forced.stderr).toMatch(/--force: removed the previous run's metrics\.jsonl, checkpoints, model\.safetensors/);
    expect(steps(out)).toEqual([1, 2]);
  }, 60_000);

  it('a kill after the last checkpoint and --resume leave each step once in metrics.jsonl', async () => {
    const out = join(dir, 'killed');
    const args = train(out, '--steps', '6', '--save-every', '2');
    // The state a SIGKILL during step 4 leaves: steps 1–3 logged, the last checkpoint at step 2. Made without
    // a kill (a spawned process costs seconds): stop after step 3, then drop that stop's own checkpoint.
    const part = await runMain([...args, '--stop-after', '3']);
    expect(part.status, show(part)).toBe(0);
    rmSync(join(out, 'checkpoints', 'step-00000003'), { recursive: true });
    writeFileSync(join(out, 'checkpoints', 'latest'), 'step-00000002\n');
    expect(steps(out)).toEqual([1, 2, 3]);
    const lossOf = (step: number) => (readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { step: number; loss: number }).find((m) => m.step === step)!.loss);
    const killedStep3 = lossOf(3);
    const r = await runMain([...args, '--resume']);
    expect(r.status, show(r)).toBe(0);
    expect(r.stderr).toMatch(/resumed at step 2\b/);
    expect(steps(out)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(lossOf(3)).toBe(killedStep3); // the re-run step 3 is the same step (exact resume), logged once
  }, 60_000);

  it('train says how long --steps will take after the first steps, and prints elapsed and ETA', async () => {
    const out = join(dir, 'eta');
    const r = await runMain(train(out, '--steps', '6'));
    expect(r.status, show(r)).toBe(0);
    const est = /mclip: (\d+\.\d\d) s\/step over steps 2–4 → the remaining 2 steps take about (\d+) s/.exec(r.stderr);
    expect(est, r.stderr).not.toBeNull();
    expect(Math.abs(Number(est![1]) * 2 - Number(est![2]))).toBeLessThanOrEqual(1);
    expect(r.stderr).toMatch(/mclip: step 6\/6 loss \d+\.\d+ .*\| \d+ s elapsed \| eta 0 s/);
  }, 60_000);

  it('reinforce reports progress inside a shard (in a log: every MCLIP_PROGRESS_SECONDS)', async () => {
    await initBackend({ backend: 'wasm', quiet: true, gradients: false });
    const cfg = getConfig('mobileclip_tiny');
    cfg.text.vocabSize = vocabSize;
    const teacher = new CLIP(cfg, { seed: 5 });
    const tpath = join(dir, 'teacher.safetensors');
    saveModel(teacher, tpath);
    teacher.dispose();
    const r = await runCli(['reinforce', '--data', data, '--teacher', tpath, '--augs', '1', '--out', join(dir, 'dr'), '--vocab', vocab, '--batch', '4'], {
      env: { MCLIP_PROGRESS_SECONDS: '0' },
    });
    expect(r.status, show(r)).toBe(0);
    const inShard = r.stderr.split('\n').filter((l) => l.startsWith('mclip: shard in progress: '));
    // 2 shards of 8 samples: a line after every sample but the first of each shard
    expect(inShard.length).toBeGreaterThanOrEqual(12);
    expect(inShard[0]).toMatch(/^mclip: shard in progress: \d+ samples in \d+ s, \d+\/16 samples overall, [\d.]+ samples\/s$/);
  }, 60_000);

  it('vocab train --size N that can only reach fewer ids warns with the number', async () => {
    const corpus = join(dir, 'small.txt');
    writeFileSync(corpus, 'a red square\na blue square\n');
    const r = await runMain(['vocab', 'train', '--texts', corpus, '--size', '5000', '--out', join(dir, 'v-small')]);
    expect(r.status, show(r)).toBe(0);
    const size = (JSON.parse(r.stdout) as { size: number }).size;
    expect(size).toBeLessThan(5000);
    const warn = errorLines(r.stderr).find((l) => l.startsWith('mclip: warning: '));
    expect(warn).toMatch(new RegExp(`--size 5000 asked, but these captions yield only ${size} tokens .*: the vocabulary has ${size} ids, not 5000`));
  });

  it('vocab train --texts takes a dataset folder (its split\'s captions)', async () => {
    const r = await runMain(['vocab', 'train', '--texts', data, '--size', '520', '--out', join(dir, 'v-data')]);
    expect(r.status, show(r)).toBe(0);
    expect(r.stderr).toMatch(/from 48 captions/); // 16 samples × (caption + 2 alternatives)
  });

  it('data emoji --limit N warns when it keeps fewer than all categories; --sample spreads over them', async () => {
    const a = await runMain(['data', 'emoji', '--out', join(dir, 'emoji-limit'), '--limit', '3']);
    expect(a.status, show(a)).toBe(0);
    expect(errorLines(a.stderr).filter((l) => l.startsWith('mclip: warning: '))).toEqual([
      expect.stringMatching(/^mclip: warning: --limit 3 keeps 1 of \d+ categories .*zero-shot over categories on this data has 1 class: use --sample 3 /),
    ]);
    const b = await runMain(['data', 'emoji', '--out', join(dir, 'emoji-sample'), '--sample', '40']);
    expect(b.status, show(b)).toBe(0);
    const m = JSON.parse(readFileSync(join(dir, 'emoji-sample', 'manifest.json'), 'utf8')) as { categories: string[] };
    expect(m.categories.length).toBeGreaterThanOrEqual(8);
  });
});
