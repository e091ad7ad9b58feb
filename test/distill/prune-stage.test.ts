/**
 * A tiny two-stage TinyCLIP run on both towers jointly (25 % → 50 % of their prunable parameters): mask
 * learning with the Lagrangian, deterministic masks, physical pruning, distillation of the pruned model.
 * Each stage lands within ±2 % of its target (the calibrated count offset), TinyCLIP's uncalibrated masks
 * near it (the Lagrangian did the work: ±6 %), and the masked model in eval mode equals the pruned one.
 */
import { beforeAll, describe, expect, test } from 'vitest';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { CLIP } from '../../src/base/model/clip.js';
import { expectedShapes } from '../../src/base/model/state-dict.js';
import { jointPrunableSize, prunableSize, runPruneStage } from '../../src/distill/prune-stage.js';
import { TEST_TEACHERS, TEST_TEACHER_WIDTH, syntheticBatch } from '../train/synthetic-batch.js';
import { MICRO_CONTEXT as L, microConfig } from '../micro-config.js';

const cfg = microConfig();
const batch = (step: number) => syntheticBatch(cfg, step, { batch: 4, context: L, seed: 99, teacherWidth: TEST_TEACHER_WIDTH });

describe('TinyCLIP stages', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true });
  });

  test('two joint stages 25 % → 50 %: each within ±2 % of its target, dense smaller models, both towers pruned', async () => {
    const before = tf.memory().numTensors;
    const teacher = new CLIP(cfg, { seed: 1 });
    const n0 = jointPrunableSize(teacher, ['text', 'image']);
    const log: number[] = [];
    const s1 = await runPruneStage(teacher, { target: 0.25, steps: 18, maskSteps: 16, teachers: TEST_TEACHERS, batch, seed: 1, onStep: (m) => m.sparsity != null && log.push(m.sparsity) });
    const s2 = await runPruneStage(s1.model, { reference: n0, target: 0.5, steps: 18, maskSteps: 16, teachers: TEST_TEACHERS, batch: (s) => batch(100 + s), seed: 2 });
    console.log(
      `stage 1: expected ${s1.expected.toFixed(3)} uncalibrated ${s1.uncalibrated.toFixed(3)} reached ${s1.reached.toFixed(3)} (δ ${s1.countShift.toFixed(2)}); ` +
        `stage 2: expected ${s2.expected.toFixed(3)} uncalibrated ${s2.uncalibrated.toFixed(3)} reached ${s2.reached.toFixed(3)} (δ ${s2.countShift.toFixed(2)}); towers ${JSON.stringify(s2.towers)}; ŝ curve ${log.map((v) => v.toFixed(2)).join(' ')}`,
    );
    expect(Math.abs(s1.reached - 0.25)).toBeLessThanOrEqual(0.02);
    expect(Math.abs(s2.reached - 0.5)).toBeLessThanOrEqual(0.02);
    expect(Math.abs(s1.uncalibrated - 0.25)).toBeLessThanOrEqual(0.06);
    expect(Math.abs(s2.uncalibrated - 0.5)).toBeLessThanOrEqual(0.06);
    expect(s2.reached).toBeCloseTo(1 - s2.prunable.after / n0, 10);
    expect(s2.prunable.after).toBe(jointPrunableSize(s2.model, ['text', 'image']));
    // both towers lost parameters, and the per-tower sizes add up
    for (const t of ['text', 'image'] as const) expect(prunableSize(s2.model, t)).toBeLessThan(prunableSize(teacher, t));
    expect(s2.towers.text!.after + s2.towers.image!.after).toBe(s2.prunable.after);
    // the pruned models are ordinary dense models: smaller, and they run
    expect(s2.model.numParams()).toBeLessThan(s1.model.numParams());
    expect(s1.model.numParams()).toBeLessThan(teacher.numParams());
    const b = batch(0);
    const e = tf.tidy(() => [s2.model.encodeText(b.gtTokens).dataSync(), s2.model.encodeImage(b.images).dataSync()]);
    tf.dispose([b.images, b.gtTokens, ...(b.synTokens ? [b.synTokens] : [])]);
    expect(e.every((a) => Array.from(a).every(Number.isFinite))).toBe(true);
    for (const m of [teacher, s1.model, s2.model]) m.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  test('target 0 is plain distillation in place; bad towers are refused', async () => {
    const m = new CLIP(cfg, { seed: 3 });
    const n = m.numParams();
    const w0 = tf.tidy(() => m.encodeText(batch(0).gtTokens).dataSync());
    const r = await runPruneStage(m, { target: 0, steps: 2, maskSteps: 0, teachers: TEST_TEACHERS, batch, seed: 1 });
    expect(r.model).toBe(m);
    expect(r.reached).toBe(0);
    expect(m.numParams()).toBe(n);
    const w1 = tf.tidy(() => m.encodeText(batch(0).gtTokens).dataSync());
    expect(w1).not.toEqual(w0);
    await expect(runPruneStage(m, { towers: [], target: 0.5, steps: 2, maskSteps: 1, teachers: TEST_TEACHERS, batch })).rejects.toThrow(/towers must be/);
    m.dispose();
  });

  test('a batch callback returning a promise (an async live teacher) trains exactly as a synchronous one', async () => {
    const run = async (async: boolean) => {
      const m = new CLIP(cfg, { seed: 5 });
      const r = await runPruneStage(m, { target: 0.3, steps: 4, maskSteps: 3, teachers: TEST_TEACHERS, batch: async ? (s) => Promise.resolve().then(() => batch(s)) : batch, seed: 1 });
      const b = batch(0);
      const out = tf.tidy(() => [...r.model.encodeText(b.gtTokens).dataSync(), ...r.model.encodeImage(b.images).dataSync()]);
      tf.dispose([b.images, b.gtTokens, ...(b.synTokens ? [b.synTokens] : [])]);
      const res = { reached: r.reached, expected: r.expected, params: r.model.numParams(), out };
      for (const x of new Set([m, r.model])) x.dispose();
      return res;
    };
    const sync = await run(false);
    const promised = await run(true);
    expect(promised).toEqual(sync);
  });

  test('a ViT image tower: one stage on the image tower lands on its target; the pruned model reloads from its config', async () => {
    const vitCfg = microConfig('mobileclip_tiny_base');
    vitCfg.image = { kind: 'vit', name: 'vit_micro', imageSize: 32, embedDim: 64, layers: 2, heads: 4, posGrid: 2 };
    const vb = (step: number) => syntheticBatch(vitCfg, step, { batch: 4, context: L, seed: 5, teacherWidth: TEST_TEACHER_WIDTH });
    const m = new CLIP(vitCfg, { seed: 4 });
    const n0 = prunableSize(m, 'image');
    const r = await runPruneStage(m, { towers: ['image'], target: 0.4, steps: 12, maskSteps: 12, teachers: TEST_TEACHERS, batch: vb, seed: 3 });
    expect(Math.abs(r.reached - 0.4)).toBeLessThanOrEqual(0.02);
    expect(prunableSize(r.model, 'image')).toBe(r.prunable.after);
    expect(r.model.textEncoder.numParams()).toBe(m.textEncoder.numParams());
    const again = new CLIP(r.model.cfg);
    expect([...expectedShapes(again)]).toEqual([...expectedShapes(r.model)]);
    expect(n0).toBe(r.prunable.before);
    for (const x of [m, r.model, again]) x.dispose();
  });
});
