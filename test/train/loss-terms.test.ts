import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { CLIP, l2normalize } from '../../src/base/model/clip.js';
import { exportStateDict } from '../../src/base/model/state-dict.js';
import { readSafetensors } from '../../src/base/io/safetensors.js';
import { AdamW } from '../../src/base/train/adamw.js';
import { clipLoss, distillLoss, reinforcedLoss } from '../../src/base/train/distill-loss.js';
import { contrastiveTerm, distillTerm, reinforcedTerms, type LossTerm } from '../../src/base/train/loss-terms.js';
import { lossAndGrads } from '../../src/base/train/step.js';
import { Trainer, type StepMetrics, type TrainBatch, type TrainerOptions } from '../../src/base/train/trainer.js';
import { cosineLr } from '../../src/base/train/schedule.js';
import { TEST_TEACHERS, TEST_TEACHER_WIDTH, syntheticBatch } from './synthetic-batch.js';
import { MICRO_CONTEXT as L, microConfig } from '../micro-config.js';

const B = 4;
const cfg = microConfig();
const TEACHERS = TEST_TEACHERS;
const W = TEST_TEACHER_WIDTH;

/** Deterministic batch keyed by the step index (gt + synthetic captions, teacher features). */
const makeBatch = (step: number): TrainBatch => syntheticBatch(cfg, step, { batch: B, context: L, seed: 2000, teacherWidth: W });

const freeBatch = (b: TrainBatch) => tf.dispose([b.images, b.gtTokens, b.synTokens!]);

const opts = (extra: Partial<TrainerOptions> = {}): TrainerOptions => ({ lr: 2e-3, warmup: 2, totalSteps: 6, teachers: TEACHERS, lambda: 0.5, seed: 3, ...extra });

/** Term f = weight·(x − 3)² of a scalar variable x. */
const quad = (name: string, x: tf.Variable, weight = 1): LossTerm => ({ name, weight, compute: () => x.sub(3).square() as tf.Scalar });

/** torch AdamW on one scalar in float64 (β₁ 0.9, β₂ 0.95 — the Trainer's defaults). */
function adamSim(x0: number, grad: (x: number) => number, lrs: number[], o: { wd?: number; ascent?: boolean } = {}): number[] {
  let [x, m, v] = [x0, 0, 0];
  const out: number[] = [];
  lrs.forEach((lr, i) => {
    const t = i + 1;
    const g = o.ascent ? -grad(x) : grad(x);
    m = 0.9 * m + 0.1 * g;
    v = 0.95 * v + 0.05 * g * g;
    x = x * (1 - lr * (o.wd ?? 0)) - (lr * (m / (1 - 0.9 ** t))) / (Math.sqrt(v / (1 - 0.95 ** t)) + 1e-8);
    out.push(x);
  });
  return out;
}

let dir: string;

describe('Trainer: named loss terms and parameter groups (micro mobileclip_tiny, wasm)', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true, gradients: true });
    dir = mkdtempSync(join(tmpdir(), 'mclip-terms-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('default terms (1 − λ)·contrastive + λ·distill equal reinforcedLoss; each term is its per-caption sum', () => {
    const model = new CLIP(cfg, { seed: 4 }).train();
    const batch = makeBatch(0);
    const trainer = new Trainer(model, opts({ lambda: 0.25 }));
    expect(trainer.losses.map((t) => [t.name, t.weight])).toEqual([
      ['contrastive', 0.75],
      ['distill', 0.25],
    ]);
    trainer.dispose();
    for (const lambda of [0, 0.25, 1]) {
      // Only the logit scale is differentiated: the gradient pass stays tiny.
      const got = lossAndGrads(model, batch, { losses: reinforcedTerms(lambda), teachers: TEACHERS, variables: [model.logitScale] });
      const ref = tf.tidy(() => {
        const img = l2normalize(model.encodeImage(batch.images)) as tf.Tensor2D;
        const gtTxt = l2normalize(model.encodeText(batch.gtTokens)) as tf.Tensor2D;
        const synTxt = l2normalize(model.encodeText(batch.synTokens!)) as tf.Tensor2D;
        const scale = model.logitScaleExp();
        const [ti, tg, ts] = [batch.teacherImg!, batch.teacherGt!, batch.teacherSyn!].map((a) => tf.tensor2d(a, [B, W]));
        const total = reinforcedLoss({ img, gtTxt, synTxt, scale, teacherImg: ti, teacherGt: tg, teacherSyn: ts, teachers: TEACHERS, lambda });
        const con = clipLoss(img, gtTxt, scale).add(clipLoss(img, synTxt, scale));
        const kd = distillLoss(img, gtTxt, scale, ti, tg, TEACHERS).add(distillLoss(img, synTxt, scale, ti, ts, TEACHERS));
        return [total, con, kd].map((t) => t.dataSync()[0]);
      });
      const [total, con, kd] = ref;
      const loss = got.loss.dataSync()[0];
      expect(Math.abs(loss - total) / total, `λ ${lambda}`).toBeLessThanOrEqual(1e-6);
      expect(Object.keys(got.losses)).toEqual(lambda === 0 ? ['contrastive'] : lambda === 1 ? ['distill'] : ['contrastive', 'distill']);
      if (lambda < 1) expect(Math.abs(got.losses.contrastive.dataSync()[0] - con) / con).toBeLessThanOrEqual(1e-6);
      if (lambda > 0) expect(Math.abs(got.losses.distill.dataSync()[0] - kd) / kd).toBeLessThanOrEqual(1e-6);
      expect(Math.abs((1 - lambda) * con + lambda * kd - total) / total).toBeLessThanOrEqual(1e-6);
      expect(Object.keys(got.grads)).toEqual([model.logitScale.name]);
      tf.dispose([got.loss, ...Object.values(got.losses), ...Object.values(got.grads)]);
    }
    freeBatch(batch);
    model.dispose();
  });

  test('ascent group moves away from the minimum, descent groups towards it, as hand-computed Adam; metrics log every term; no leaks', () => {
    const model = new CLIP(cfg, { seed: 6 });
    const [x, y, z] = [0, 0, 0].map((v) => tf.variable(tf.scalar(v)));
    const metricsPath = join(dir, 'groups.jsonl');
    const trainer = new Trainer(
      model,
      opts({
        metricsPath,
        losses: [...reinforcedTerms(0.5), quad('up', x), quad('down', y, 0.5), quad('sched', z)],
        paramGroups: [
          { name: 'up', variables: [x], lr: 0.1, weightDecay: 0, ascent: true },
          { name: 'down', variables: [y], lr: 0.1, weightDecay: 0.1 },
          { name: 'sched', variables: [z], lr: 0.1, weightDecay: 0, schedule: true },
        ],
      }),
    );
    const steps = 4;
    const xs: number[][] = [];
    const metrics: StepMetrics[] = [];
    let before = 0;
    for (let i = 0; i < steps; i++) {
      const batch = makeBatch(i);
      metrics.push(trainer.step(batch));
      freeBatch(batch);
      xs.push([x, y, z].map((v) => v.dataSync()[0]));
      if (i === 0) before = tf.memory().numTensors;
      else expect(tf.memory().numTensors, `step ${i + 1}`).toBe(before);
    }
    // First Adam step: exactly lr·sign(g) (g = 2(v − 3) = −6, ×0.5 for 'down') up to eps; decay of 0 is 0.
    expect(Math.abs(xs[0][0] - -0.1)).toBeLessThanOrEqual(1e-6);
    expect(Math.abs(xs[0][1] - 0.1)).toBeLessThanOrEqual(1e-6);
    expect(Math.abs(xs[0][2] - 0.05)).toBeLessThanOrEqual(1e-6); // scheduled: warm-up factor ½
    // Later steps follow float64 AdamW with the unclipped gradient (extra groups are never clipped).
    const factors = Array.from({ length: steps }, (_, t) => cosineLr(t, { baseLr: 1, warmup: 2, steps: 6 }));
    const simX = adamSim(0, (v) => 2 * (v - 3), Array(steps).fill(0.1), { ascent: true });
    const simY = adamSim(0, (v) => v - 3, Array(steps).fill(0.1), { wd: 0.1 });
    const simZ = adamSim(0, (v) => 2 * (v - 3), factors.map((f) => 0.1 * f));
    for (let i = 0; i < steps; i++) {
      expect(Math.abs(xs[i][0] - simX[i]), `x step ${i + 1}`).toBeLessThanOrEqual(1e-5);
      expect(Math.abs(xs[i][1] - simY[i]), `y step ${i + 1}`).toBeLessThanOrEqual(1e-5);
      expect(Math.abs(xs[i][2] - simZ[i]), `z step ${i + 1}`).toBeLessThanOrEqual(1e-5);
      if (i > 0) {
        expect(xs[i][0]).toBeLessThan(xs[i - 1][0]);
        expect(xs[i][1]).toBeGreaterThan(xs[i - 1][1]);
      }
    }
    // Per-term losses (unweighted) in metrics.jsonl; Σ weight·term = loss.
    const lines = readFileSync(metricsPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { step: number; loss: number; losses: Record<string, number>; groupLr: Record<string, number> });
    expect(lines.map((l) => l.step)).toEqual([1, 2, 3, 4]);
    const weights: Record<string, number> = { contrastive: 0.5, distill: 0.5, up: 1, down: 0.5, sched: 1 };
    lines.forEach((l, i) => {
      expect(Object.keys(l.losses)).toEqual(['contrastive', 'distill', 'up', 'down', 'sched']);
      expect(l.losses).toEqual(metrics[i].losses);
      const sum = Object.entries(l.losses).reduce((s, [k, v]) => s + weights[k] * v, 0);
      expect(Math.abs(sum - l.loss) / l.loss, `step ${i + 1}`).toBeLessThanOrEqual(1e-6);
      const prev = i === 0 ? [0, 0, 0] : xs[i - 1];
      expect(l.losses.up).toBeCloseTo((prev[0] - 3) ** 2, 4);
      expect(l.losses.down).toBeCloseTo((prev[1] - 3) ** 2, 4);
      expect(l.losses.sched).toBeCloseTo((prev[2] - 3) ** 2, 4);
      expect(l.losses.contrastive).toBeGreaterThan(0);
      expect(l.losses.distill).toBeGreaterThan(0);
      expect(l.groupLr).toEqual({ up: 0.1, down: 0.1, sched: 0.1 * factors[i] });
    });
    trainer.dispose();
    tf.dispose([x, y, z]);
    model.dispose();
  });

  test('resume with extra groups (ascent multiplier, scheduled decayed vector, lr changed by a plug-in) is bit-identical', async () => {
    const makeVars = (lam0: number, v0: number[]) => ({ lam: tf.variable(tf.scalar(lam0)), v: tf.variable(tf.tensor1d(v0)) });
    const setup = (modelSeed: number, vars: ReturnType<typeof makeVars>, extra: Partial<TrainerOptions> = {}) => {
      const model = new CLIP(cfg, { seed: modelSeed });
      const { lam, v } = vars;
      // A Lagrangian-like term coupled to the model, and an anchor of v to the mean text feature.
      const lagrangian: LossTerm = { name: 'lagrangian', compute: (x) => lam.mul(x.img.mean().sub(0.01)) as tf.Scalar };
      const anchor: LossTerm = { name: 'anchor', weight: 0.3, compute: (x) => v.sub(x.gtTxt.mean(0).slice([0], [3])).square().sum() as tf.Scalar };
      const trainer = new Trainer(
        model,
        opts({
          losses: [...reinforcedTerms(0.5), lagrangian, anchor],
          paramGroups: [
            { name: 'lag', variables: [lam], lr: 0.05, weightDecay: 0, ascent: true },
            { name: 'aux', variables: [v], lr: 0.02, weightDecay: 0.1, schedule: true },
          ],
          ...extra,
        }),
      );
      return { model, trainer };
    };
    const lagrangian: number[] = [];
    const run = (t: Trainer, n: number) => {
      const losses: number[] = [];
      for (let i = 0; i < n; i++) {
        const batch = makeBatch(t.stepCount);
        t.dataState = { position: t.stepCount + 1 };
        const m = t.step(batch);
        losses.push(m.loss);
        lagrangian.push(m.losses.lagrangian);
        freeBatch(batch);
        // A plug-in lowers the multiplier's lr after step 1 (like TinyCLIP's prune step).
        if (t.stepCount === 1) t.optimizer.group('lag').lr = 0.01;
      }
      return losses;
    };
    const va = makeVars(0.5, [0.1, -0.2, 0.3]);
    const a = setup(5, va);
    const lossA = run(a.trainer, 1);
    // First ascent step on lam·c (c = mean(img) − 0.01, the logged term / lam): lam moves by exactly +lr·sign(c).
    const c1 = lagrangian[0] / 0.5;
    expect(Math.abs(va.lam.dataSync()[0] - (0.5 + 0.05 * Math.sign(c1)))).toBeLessThanOrEqual(1e-6);
    lossA.push(...run(a.trainer, 3));
    const finalA = exportStateDict(a.model);
    const [lamA, vA] = [va.lam.dataSync()[0], Array.from(va.v.dataSync())];

    const ckpt = join(dir, 'ckpt');
    const vb1 = makeVars(0.5, [0.1, -0.2, 0.3]);
    const b1 = setup(5, vb1, { checkpointDir: ckpt, saveEvery: 2 });
    const lossB = run(b1.trainer, 2);
    const { tensors } = readSafetensors(join(ckpt, 'step-00000002', 'optimizer.safetensors'));
    for (const k of ['lag.0', 'lag.0.exp_avg', 'lag.0.exp_avg_sq', 'aux.0', 'aux.0.exp_avg', 'aux.0.exp_avg_sq']) expect(tensors.has(k), k).toBe(true);
    expect(Array.from(tensors.get('aux.0')!.data as Float32Array)).toEqual(Array.from(vb1.v.dataSync()));
    const state = JSON.parse(readFileSync(join(ckpt, 'step-00000002', 'state.json'), 'utf8')) as { groupLr: Record<string, number> };
    expect(state.groupLr).toEqual({ lag: 0.01, aux: 0.02 }); // aux: scheduled lr of step 2 (factor 1)
    b1.trainer.dispose();
    b1.model.dispose();

    const vb2 = makeVars(7, [9, 9, 9]);
    const b2 = setup(99, vb2, { checkpointDir: ckpt, saveEvery: 2 });
    await b2.trainer.resume(ckpt);
    expect(b2.trainer.optimizer.group('lag').lr).toBe(0.01);
    lossB.push(...run(b2.trainer, 2));
    const finalB = exportStateDict(b2.model);
    expect(lossB).toEqual(lossA);
    expect(vb2.lam.dataSync()[0]).toBe(lamA);
    expect(Array.from(vb2.v.dataSync())).toEqual(vA);
    let maxDiff = 0;
    for (const [k, t] of finalA) {
      const u = finalB.get(k)!;
      for (let i = 0; i < t.data.length; i++) maxDiff = Math.max(maxDiff, Math.abs(Number(t.data[i]) - Number(u.data[i])));
    }
    expect(maxDiff).toBe(0);
    for (const s of [a, b2]) {
      s.trainer.dispose();
      s.model.dispose();
    }
    tf.dispose([va.lam, va.v, vb1.lam, vb1.v, vb2.lam, vb2.v]);
  });

  test('invalid groups and terms are clear errors that leave no tensors', () => {
    const model = new CLIP(cfg, { seed: 1 });
    const w = tf.variable(tf.scalar(1));
    const frozen = tf.variable(tf.scalar(1), false);
    const n0 = tf.memory().numTensors;
    const g = (name: string, variables: tf.Variable[]) => ({ name, variables, lr: 0.1, weightDecay: 0 });
    expect(() => new AdamW(model, { lr: 1, groups: [g('model', [w])] })).toThrow(/reserved/);
    expect(() => new AdamW(model, { lr: 1, groups: [g('a', [w]), g('a', [])] })).toThrow(/used twice/);
    expect(() => new AdamW(model, { lr: 1, groups: [g('a', [w]), g('b', [w])] })).toThrow(/already optimised/);
    expect(() => new AdamW(model, { lr: 1, groups: [g('a', [model.logitScale])] })).toThrow(/already optimised/);
    expect(() => new AdamW(model, { lr: 1, groups: [g('a', [frozen])] })).toThrow(/not trainable/);
    expect(() => new AdamW(model, { lr: 1, groups: [g('a.b', [w])] })).toThrow(/must match/);
    expect(tf.memory().numTensors).toBe(n0);
    const batch = makeBatch(0);
    const n1 = tf.memory().numTensors;
    for (const [losses, msg, teachers] of [
      [[quad('q', w), { name: 'vec', compute: () => tf.tile(w.reshape([1]), [2]) as tf.Scalar }], /returned shape \[2\], expected a scalar/, TEACHERS],
      [[quad('q', w), quad('q', w)], /'q' appears twice/, TEACHERS],
      [[quad('q', w, 0)], /no loss term with a non-zero weight/, TEACHERS],
      // Fails inside the gradient tape, after the forward: still nothing left behind.
      [[contrastiveTerm(), distillTerm()], /'distill' needs teachers/, undefined],
    ] as const) {
      const t = new Trainer(model, opts({ losses, teachers }));
      const n2 = tf.memory().numTensors;
      expect(() => t.step(batch)).toThrow(msg);
      expect(tf.memory().numTensors).toBe(n2);
      t.dispose();
      expect(tf.memory().numTensors).toBe(n1);
    }
    freeBatch(batch);
    tf.dispose([w, frozen]);
    model.dispose();
  });
});
