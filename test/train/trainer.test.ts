import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { CLIP } from '../../src/base/model/clip.js';
import { exportStateDict } from '../../src/base/model/state-dict.js';
import { openClipExclude } from '../../src/base/train/adamw.js';
import { Trainer, loadTrainState, saveTrainState, type TrainBatch, type TrainerOptions } from '../../src/base/train/trainer.js';
import { TEST_TEACHERS, TEST_TEACHER_WIDTH, syntheticBatch } from './synthetic-batch.js';
import { MICRO_CONTEXT as L, microConfig } from '../micro-config.js';

const B = 4;
/** Every block type of mobileclip_tiny at micro widths (test/micro-config.ts): a step takes a fraction of a second. */
const cfg = microConfig();
const TEACHERS = TEST_TEACHERS;
const W = TEST_TEACHER_WIDTH;

/** Deterministic synthetic batch keyed by the step index; `pick` (from the trainer's rng) selects the synthetic caption. */
const makeBatch = (step: number, pick: number): TrainBatch => syntheticBatch(cfg, step, { batch: B, context: L, seed: 1000, teacherWidth: W, pick: pick === 1 ? 1 : 0 });

function runSteps(trainer: Trainer, n: number): number[] {
  const losses: number[] = [];
  for (let i = 0; i < n; i++) {
    const batch = makeBatch(trainer.stepCount, trainer.rng.int(2));
    trainer.dataState = { position: trainer.stepCount + 1 };
    losses.push(trainer.step(batch).loss);
    tf.dispose([batch.images, batch.gtTokens, batch.synTokens!]);
  }
  return losses;
}

let dir: string;
const opts = (extra: Partial<TrainerOptions> = {}): TrainerOptions => ({
  lr: 2e-3,
  warmup: 2,
  totalSteps: 6,
  teachers: TEACHERS,
  lambda: 0.5,
  seed: 11,
  ...extra,
});

describe('Trainer (mobileclip_tiny at micro widths, wasm)', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true, gradients: true });
    dir = mkdtempSync(join(tmpdir(), 'mclip-trainer-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('weight decay groups follow the open_clip rule', () => {
    const model = new CLIP(cfg, { seed: 1 });
    const trainer = new Trainer(model, opts());
    const decayed = new Set(trainer.optimizer.decayedNames());
    const trainable = model.namedParams().filter(([, p]) => p.trainable);
    for (const [n, p] of trainable) {
      expect(decayed.has(n), n).toBe(!openClipExclude(n, p));
      expect(p.noDecay, `${n}: model flag`).toBe(openClipExclude(n, p));
    }
    const names = [...decayed];
    expect(decayed.has('logit_scale')).toBe(false);
    const shape = new Map(trainable.map(([n, p]) => [n, p.torchShape]));
    // Norm weights/biases (BN, LN, the RepMixer skip BN) and all biases are 1-D: never decayed.
    expect(names.filter((n) => shape.get(n)!.length < 2 || /\.bn\.|\.bias$|rbr_skip/.test(n))).toEqual([]);
    expect(decayed.has('text_encoder.final_layer_norm.weight')).toBe(false);
    expect(decayed.has('text_encoder.transformer.1.pre_norm_mha.0.weight')).toBe(false);
    expect(decayed.has('text_encoder.transformer.1.pre_norm_mha.1.qkv_proj.weight')).toBe(true);
    expect(decayed.has('text_encoder.projection_layer')).toBe(true);
    expect(decayed.has('text_encoder.embedding_layer.weight')).toBe(true);
    expect(names.some((n) => n.endsWith('qkv_proj.weight'))).toBe(true);
    expect(names.some((n) => n.endsWith('conv.weight'))).toBe(true);
    // MCi layer scales are [C,1,1] in PyTorch (ndim 3): open_clip decays them.
    expect(names.some((n) => n.endsWith('layer_scale'))).toBe(true);
    trainer.dispose();
    model.dispose();
  });

  test('3 steps + save + fresh model/trainer + resume + 3 steps == 6 uninterrupted steps', async () => {
    // Uninterrupted run.
    const a = new CLIP(cfg, { seed: 5 });
    const ta = new Trainer(a, opts({ metricsPath: join(dir, 'a.jsonl') }));
    const lossA = runSteps(ta, 6);
    const finalA = exportStateDict(a);
    const rngA = ta.rng.state;
    ta.dispose();
    a.dispose();

    // Interrupted run: 3 steps with a checkpoint every 3, then a new model (other seed) and trainer.
    const ckpt = join(dir, 'ckpt');
    const b1 = new CLIP(cfg, { seed: 5 });
    const tb1 = new Trainer(b1, opts({ checkpointDir: ckpt, saveEvery: 3, metricsPath: join(dir, 'b.jsonl') }));
    const lossB = runSteps(tb1, 3);
    tb1.dispose();
    b1.dispose();
    expect(readFileSync(join(ckpt, 'latest'), 'utf8').trim()).toBe('step-00000003');
    expect(readdirSync(ckpt).filter((n) => n.startsWith('.'))).toEqual([]);

    const b2 = new CLIP(cfg, { seed: 99 });
    const tb2 = new Trainer(b2, opts({ checkpointDir: ckpt, saveEvery: 3, metricsPath: join(dir, 'b.jsonl') }));
    const meta = await tb2.resume(ckpt);
    expect(meta.step).toBe(3);
    expect(meta.data).toEqual({ position: 3 });
    expect(tb2.stepCount).toBe(3);
    expect(tb2.optimizer.step).toBe(3);
    lossB.push(...runSteps(tb2, 3));
    const finalB = exportStateDict(b2);
    // The resumed trainer checkpointed again at step 6; keep = 2 retains both, `latest` points at 6.
    expect(readdirSync(ckpt).sort()).toEqual(['latest', 'step-00000003', 'step-00000006']);
    expect(readFileSync(join(ckpt, 'latest'), 'utf8').trim()).toBe('step-00000006');
    expect(tb2.rng.state).toBe(rngA);
    tb2.dispose();
    b2.dispose();

    for (let i = 0; i < 6; i++) expect(Math.abs(lossB[i] - lossA[i]) / Math.abs(lossA[i]), `step ${i + 1}`).toBeLessThanOrEqual(1e-6);
    let maxDiff = 0;
    for (const [k, t] of finalA) {
      const u = finalB.get(k)!;
      for (let i = 0; i < t.data.length; i++) maxDiff = Math.max(maxDiff, Math.abs(Number(t.data[i]) - Number(u.data[i])));
    }
    expect(maxDiff).toBe(0);
    expect(lossA.every(Number.isFinite)).toBe(true);

    // Metrics: one JSON line per step.
    const lines = readFileSync(join(dir, 'a.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => l.step)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(lines[0].lr).toBeCloseTo(1e-3, 12); // warm-up: 2e-3 · 1/2
    expect(lines[2].lr).toBeCloseTo(2e-3, 12);
    for (const l of lines) for (const f of ['loss', 'lr', 'samplesPerSec', 'gradNorm', 'logitScale']) expect(Number.isFinite(l[f]), f).toBe(true);
    // Default terms at λ = 0.5: loss = ½·contrastive + ½·distill, each logged.
    for (const l of lines) {
      expect(Object.keys(l.losses)).toEqual(['contrastive', 'distill']);
      expect(Math.abs(0.5 * l.losses.contrastive + 0.5 * l.losses.distill - l.loss) / l.loss).toBeLessThanOrEqual(1e-6);
    }
    const linesB = readFileSync(join(dir, 'b.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(linesB.map((l) => l.loss)).toEqual(lossB);
    console.log(`losses ${lossA.map((l) => l.toFixed(5)).join(' ')}`);
  });

  test('saveTrainState overwrites atomically (no temp/old dirs left); loadTrainState restores weights, data and rng', async () => {
    const root = join(dir, 'atomic');
    const m = new CLIP(cfg, { seed: 8 });
    const t = new Trainer(m, opts());
    saveTrainState(join(root, 'state'), { model: m, optimizer: t.optimizer, step: 1, rng: 5, data: { a: 1 } });
    t.rng.state = 77;
    t.dataState = { shard: 'x', offset: 12 };
    t.stepCount = 2;
    t.save(join(root, 'state'));
    expect(readdirSync(root)).toEqual(['state']);
    const m2 = new CLIP(cfg, { seed: 9 });
    const t2 = new Trainer(m2, opts());
    const meta = await loadTrainState(join(root, 'state'), { model: m2, optimizer: t2.optimizer });
    expect(meta).toEqual({ step: 2, rng: 77, data: { shard: 'x', offset: 12 } });
    const [sa, sb] = [exportStateDict(m), exportStateDict(m2)];
    for (const [k, v] of sa) expect(Buffer.compare(Buffer.from(v.data.buffer, v.data.byteOffset, v.data.byteLength), Buffer.from(sb.get(k)!.data.buffer, sb.get(k)!.data.byteOffset, sb.get(k)!.data.byteLength)), k).toBe(0);
    await expect(loadTrainState(join(root, 'missing'), { model: m2, optimizer: t2.optimizer })).rejects.toThrow(/no training state/);
    // lambda > 0 without teacher features is a clear error, not a leak.
    const n0 = tf.memory().numTensors;
    const bad = makeBatch(0, 0);
    const n1 = tf.memory().numTensors;
    expect(() => t2.step({ images: bad.images, gtTokens: bad.gtTokens, synTokens: bad.synTokens })).toThrow(/needs teacherImg/);
    expect(tf.memory().numTensors).toBe(n1);
    tf.dispose([bad.images, bad.gtTokens, bad.synTokens!]);
    expect(tf.memory().numTensors).toBe(n0);
    [t, t2].forEach((x) => x.dispose());
    [m, m2].forEach((x) => x.dispose());
  });

  test('tensor count stays flat over 10 steps; logit scale stays clamped to [0, ln 100]', () => {
    const model = new CLIP(cfg, { seed: 2 });
    const trainer = new Trainer(model, opts({ totalSteps: 11, lr: 5e-2 }));
    model.logitScale.assign(tf.scalar(Math.log(100) - 0.01));
    runSteps(trainer, 1);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 10; i++) {
      runSteps(trainer, 1);
      expect(tf.memory().numTensors).toBe(before);
      const ls = model.logitScale.dataSync()[0];
      expect(ls).toBeGreaterThanOrEqual(0);
      expect(ls).toBeLessThanOrEqual(Math.log(100) + 1e-6);
    }
    trainer.dispose();
    model.dispose();
  });
});
