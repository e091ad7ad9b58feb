/**
 * A tiny two-stage TinyCLIP run on the text tower (25 % → 50 % of its prunable parameters): mask learning
 * with the Lagrangian, deterministic masks, physical pruning, distillation of the pruned model. The pruned
 * model's size is the one the gates expected when mask learning stopped (±3 % of the prunable parameters:
 * the deterministic masks round per gate group), and with 24 mask steps a stage lands within ±5 % of its target (the issue's ±2 % needs longer stages or a
 * better-damped controller: docs/tinyclip.md).
 */
import { beforeAll, describe, expect, test } from 'vitest';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { CLIP } from '../../src/base/model/clip.js';
import { runTextPruneStage } from '../../src/distill/text-prune-stage.js';
import { textPrunableSize } from '../../src/distill/masks/text-gates.js';
import { TEST_TEACHERS, TEST_TEACHER_WIDTH, syntheticBatch } from '../train/synthetic-batch.js';
import { MICRO_CONTEXT as L, microConfig } from '../micro-config.js';

const cfg = microConfig();
const batch = (step: number) => syntheticBatch(cfg, step, { batch: 4, context: L, seed: 99, teacherWidth: TEST_TEACHER_WIDTH });

describe('TinyCLIP text-tower stages', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true });
  });

  test('two stages 25 % → 50 %: pruned size = expected size, near the targets, dense smaller models', () => {
    const before = tf.memory().numTensors;
    const teacher = new CLIP(cfg, { seed: 1 });
    const n0 = textPrunableSize(teacher);
    const log: number[] = [];
    const s1 = runTextPruneStage(teacher, { target: 0.25, steps: 26, maskSteps: 24, teachers: TEST_TEACHERS, batch, seed: 1, onStep: (m) => m.sparsity != null && log.push(m.sparsity) });
    const s2 = runTextPruneStage(s1.model, { reference: n0, target: 0.5, steps: 26, maskSteps: 24, teachers: TEST_TEACHERS, batch: (s) => batch(100 + s), seed: 2 });
    console.log(`stage 1: expected ${s1.expected.toFixed(3)} reached ${s1.reached.toFixed(3)}; stage 2 expected ${s2.expected.toFixed(3)} reached ${s2.reached.toFixed(3)} of the original; ŝ curve ${log.map((v) => v.toFixed(2)).join(' ')}`);
    expect(Math.abs(s1.reached - s1.expected)).toBeLessThanOrEqual(0.03);
    expect(Math.abs(s2.reached - s2.expected)).toBeLessThanOrEqual(0.03);
    expect(Math.abs(s1.reached - 0.25)).toBeLessThanOrEqual(0.05);
    expect(Math.abs(s2.reached - 0.5)).toBeLessThanOrEqual(0.05);
    expect(s2.reached).toBeCloseTo(1 - s2.prunable.after / n0, 10);
    // the pruned models are ordinary dense models: smaller, and they run
    expect(s2.model.numParams()).toBeLessThan(s1.model.numParams());
    expect(s1.model.numParams()).toBeLessThan(teacher.numParams());
    const e = tf.tidy(() => s2.model.encodeText(batch(0).gtTokens).dataSync());
    expect(Array.from(e).every(Number.isFinite)).toBe(true);
    for (const m of [teacher, s1.model, s2.model]) m.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
