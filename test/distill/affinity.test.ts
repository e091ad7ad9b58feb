import { beforeAll, describe, expect, test } from 'vitest';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { CLIP, l2normalize } from '../../src/base/model/clip.js';
import { clipLoss, distillLoss } from '../../src/base/train/distill-loss.js';
import { lossAndGrads } from '../../src/base/train/step.js';
import type { LossInputs, LossTerm, TeacherFeatures, TrainBatch } from '../../src/base/train/loss-terms.js';
import { affinityDirections, affinityMimicking, affinityTerm, type LiveTeacherFeatures } from '../../src/distill/affinity.js';
import { tinyclipDefaults, tinyclipTerms, type TinyclipTermsOptions } from '../../src/distill/compose.js';
import { MclipError } from '../../src/errors.js';
import { TEST_TEACHERS, TEST_TEACHER_WIDTH, syntheticBatch } from '../train/synthetic-batch.js';
import { MICRO_CONTEXT, microConfig } from '../micro-config.js';

// ---- float64 reference in plain JS -------------------------------------------------------------------------

type Mat = number[][];

/** Deterministic uniform numbers in [0, 1) (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** b×d roughly Gaussian rows (sum of three uniforms). */
function randomRows(r: () => number, b: number, d: number): Mat {
  return Array.from({ length: b }, () => Array.from({ length: d }, () => r() + r() + r() - 1.5));
}

const normalize64 = (m: Mat): Mat =>
  m.map((row) => {
    const n = Math.sqrt(row.reduce((s, x) => s + x * x, 0));
    return row.map((x) => x / n);
  });

/** Rows rounded to float32, as the tensors hold them (the reference then sees the same inputs). */
const f32 = (m: Mat): Mat => m.map((row) => Array.from(Float32Array.from(row)));

const t2d = (m: Mat): tf.Tensor2D => tf.tensor2d(Float32Array.from(m.flat()), [m.length, m[0].length]);

const transpose = (m: Mat): Mat => m[0].map((_, j) => m.map((row) => row[j]));

/** s · A Bᵀ. */
const logits = (a: Mat, b: Mat, s: number): Mat => a.map((ai) => b.map((bj) => s * ai.reduce((acc, x, k) => acc + x * bj[k], 0)));

function logSoftmaxRows(m: Mat): Mat {
  return m.map((row) => {
    const mx = Math.max(...row);
    const lse = mx + Math.log(row.reduce((s, x) => s + Math.exp(x - mx), 0));
    return row.map((x) => x - lse);
  });
}

/** CE(rowsoftmax(T), rowsoftmax(S)) = −(1/b) Σ_ij P_ij log Q_ij. */
function ceRows(teacher: Mat, student: Mat): number {
  const lp = logSoftmaxRows(teacher);
  const lq = logSoftmaxRows(student);
  let s = 0;
  for (let i = 0; i < lp.length; i++) for (let j = 0; j < lp[i].length; j++) s -= Math.exp(lp[i][j]) * lq[i][j];
  return s / lp.length;
}

/** L_AM and its two directions in float64 (features used as given: pass normalised rows). */
function amRef(u: Mat, v: Mat, s: number, tu: Mat, tv: Mat, ts: number): { i2t: number; t2i: number; am: number } {
  const S = logits(u, v, s);
  const T = logits(tu, tv, ts);
  const i2t = ceRows(T, S);
  const t2i = ceRows(transpose(T), transpose(S));
  return { i2t, t2i, am: (i2t + t2i) / 2 };
}

const rel = (got: number, want: number): number => Math.abs(got - want) / Math.abs(want);
const val = (t: tf.Tensor): number => t.dataSync()[0];

/** Rows of the [b, W] stored teacher array, columns [off, off + dim). */
const storedRows = (a: Float32Array, b: number, off: number, dim: number): Mat =>
  Array.from({ length: b }, (_, i) => Array.from(a.subarray(i * TEST_TEACHER_WIDTH + off, i * TEST_TEACHER_WIDTH + off + dim)));

const expectMclipError = (f: () => unknown, pattern: RegExp): void => {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err, String(pattern)).toBeInstanceOf(MclipError);
  const msg = (err as Error).message;
  expect(msg).toMatch(pattern);
  expect(msg).not.toContain('\n');
};

// ---- fixtures ----------------------------------------------------------------------------------------------

const B = 5;
const D = 16;
const DT = 24;
const cfg = microConfig();

/** LossInputs by hand: random normalised student features of width D, the synthetic batch's stored teacher features. */
function handInputs(model: CLIP, batch: TrainBatch, seed: number, withSyn: boolean): { x: LossInputs; u: Mat; gt: Mat; syn: Mat } {
  const r = rng(seed);
  const [u, gt, syn] = [0, 1, 2].map(() => f32(normalize64(randomRows(r, B, D))));
  const teacher: TeacherFeatures = {
    specs: TEST_TEACHERS,
    img: tf.tensor2d(batch.teacherImg!, [B, TEST_TEACHER_WIDTH]),
    gt: tf.tensor2d(batch.teacherGt!, [B, TEST_TEACHER_WIDTH]),
    syn: withSyn ? tf.tensor2d(batch.teacherSyn!, [B, TEST_TEACHER_WIDTH]) : undefined,
  };
  const x: LossInputs = {
    model,
    batch,
    img: t2d(u),
    gtTxt: t2d(gt),
    synTxt: withSyn ? t2d(syn) : undefined,
    scale: tf.scalar(14),
    teacher,
    step: 0,
  };
  return { x, u, gt, syn };
}

const freeInputs = (x: LossInputs): void => {
  tf.dispose([x.img, x.gtTxt, x.scale, ...(x.synTxt ? [x.synTxt] : [])]);
  if (x.teacher) tf.dispose([x.teacher.img, x.teacher.gt, ...(x.teacher.syn ? [x.teacher.syn] : [])]);
};

const freeBatch = (b: TrainBatch): void => tf.dispose([b.images, b.gtTokens, ...(b.synTokens ? [b.synTokens] : [])]);

let model: CLIP;

describe('TinyCLIP affinity mimicking and the composed loss (wasm)', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true, gradients: true });
    model = new CLIP(cfg, { seed: 11 }).train();
  });

  test('L_AM and each direction match a float64 reference (teacher scales 50, 10; student scales 1, 14, 100; teacher wider)', () => {
    const r = rng(1);
    // Asymmetric batch: images 0 and 1 are near-duplicates (in both models) while their captions are not,
    // so image rows and caption rows see different distributions.
    const [ru, rv, rtu, rtv] = [D, D, DT, DT].map((d) => randomRows(r, B, d));
    for (const m of [ru, rtu]) m[1] = m[0].map((x) => x + 0.1 * (r() - 0.5));
    const [u, v, tu, tv] = [ru, rv, rtu, rtv].map((m) => f32(normalize64(m)));
    const before = tf.memory().numTensors;
    const [U, V, TU, TV] = [u, v, tu, tv].map(t2d);
    for (const ts of [50, 10]) {
      for (const s of [1, 14, 100]) {
        const ref = amRef(u, v, s, tu, tv, ts);
        // The batch is asymmetric: swapping the directions (or computing one twice) would be caught.
        expect(rel(ref.i2t, ref.t2i), `ts ${ts}, s ${s}: directions differ`).toBeGreaterThan(1e-3);
        const scale = tf.scalar(s);
        const dir = affinityDirections(U, V, scale, TU, TV, ts);
        const am = affinityMimicking(U, V, scale, TU, TV, ts);
        const amNumber = affinityMimicking(U, V, s, TU, TV, ts);
        expect(rel(val(dir.i2t), ref.i2t), `i2t ts ${ts}, s ${s}`).toBeLessThanOrEqual(1e-5);
        expect(rel(val(dir.t2i), ref.t2i), `t2i ts ${ts}, s ${s}`).toBeLessThanOrEqual(1e-5);
        expect(rel(val(am), ref.am), `L_AM ts ${ts}, s ${s}`).toBeLessThanOrEqual(1e-5);
        expect(rel(val(amNumber), ref.am)).toBeLessThanOrEqual(1e-5);
        // The single-teacher case of MobileCLIP's L_KD (methods §2.1 / §3.1).
        const kd = distillLoss(U, V, scale, TU, TV, [{ dim: DT, logitScale: ts }]);
        expect(rel(val(am), val(kd)), `vs distillLoss ts ${ts}, s ${s}`).toBeLessThanOrEqual(1e-6);
        tf.dispose([scale, dir.i2t, dir.t2i, am, amNumber, kd]);
      }
    }
    // Default teacher scale: TinyCLIP's 50.
    const d = affinityMimicking(U, V, 14, TU, TV);
    expect(rel(val(d), amRef(u, v, 14, tu, tv, 50).am)).toBeLessThanOrEqual(1e-5);
    // Student = teacher at the teacher's scale: the loss is the teacher's entropy (½ H(I2T) + ½ H(T2I)).
    const self = affinityMimicking(TU, TV, 50, TU, TV, 50);
    expect(rel(val(self), amRef(tu, tv, 50, tu, tv, 50).am)).toBeLessThanOrEqual(1e-5);
    tf.dispose([d, self, U, V, TU, TV]);
    expect(tf.memory().numTensors).toBe(before);
    // Shape and scale errors.
    tf.tidy(() => {
      const [a, b4, t] = [tf.zeros([B, D]), tf.zeros([B - 1, D]), tf.zeros([B, DT])] as tf.Tensor2D[];
      expectMclipError(() => affinityMimicking(a, b4, 1, t, t), /student features have shapes \[5,16\] and \[4,16\]/);
      expectMclipError(() => affinityMimicking(a, a, 1, t, tf.zeros([B, DT + 1]) as tf.Tensor2D), /teacher features/);
      expectMclipError(() => affinityMimicking(a, a, 1, t, t, 0), /teacherScale must be a positive number, got 0/);
    });
    expect(tf.memory().numTensors).toBe(before);
  });

  test('gradients w.r.t. student features and scale are finite, match float64 central differences, and descend', () => {
    const r = rng(2);
    const [xi, xt] = [0, 1].map(() => f32(randomRows(r, B, D))); // raw (un-normalised) student features
    const [tu, tv] = [0, 1].map(() => f32(normalize64(randomRows(r, B, DT))));
    const [di, dt] = [0, 1].map(() => randomRows(r, B, D)); // a direction
    const ts = 10;
    const s0 = 14;
    const before = tf.memory().numTensors;
    const [TU, TV] = [tu, tv].map(t2d);
    const f = (a: tf.Tensor, b: tf.Tensor, s: tf.Tensor): tf.Scalar =>
      tf.tidy(() => affinityMimicking(l2normalize(a) as tf.Tensor2D, l2normalize(b) as tf.Tensor2D, s as tf.Scalar, TU, TV, ts));
    const [XI, XT, S] = [t2d(xi), t2d(xt), tf.scalar(s0)];
    const [gi, gt, gs] = tf.grads(f)([XI, XT, S]);
    const [gI, gT] = [gi, gt].map((g) => Array.from(g.dataSync()));
    const gS = val(gs);
    for (const g of [...gI, ...gT, gS]) expect(Number.isFinite(g)).toBe(true);
    const gnorm = Math.sqrt([...gI, ...gT].reduce((acc, g) => acc + g * g, 0));
    expect(gnorm).toBeGreaterThan(1e-3);

    // Directional derivative along (di, dt) and d/ds against float64 central differences.
    const F = (ei: number, es: number): number =>
      amRef(
        normalize64(xi.map((row, i) => row.map((x, k) => x + ei * di[i][k]))),
        normalize64(xt.map((row, i) => row.map((x, k) => x + ei * dt[i][k]))),
        s0 + es,
        tu,
        tv,
        ts,
      ).am;
    const eps = 1e-5;
    const fdDir = (F(eps, 0) - F(-eps, 0)) / (2 * eps);
    const gDir = gI.reduce((acc, g, n) => acc + g * di[Math.floor(n / D)][n % D], 0) + gT.reduce((acc, g, n) => acc + g * dt[Math.floor(n / D)][n % D], 0);
    expect(Math.abs(gDir - fdDir)).toBeLessThanOrEqual(1e-4 * Math.max(1, Math.abs(fdDir)));
    const fdS = (F(0, eps) - F(0, -eps)) / (2 * eps);
    expect(Math.abs(gS - fdS)).toBeLessThanOrEqual(1e-4 * Math.max(1, Math.abs(fdS)));

    // A small step along −grad lowers the loss.
    const l0 = f(XI, XT, S);
    const eta = 0.05 / gnorm;
    const [XI2, XT2] = tf.tidy(() => [XI.sub(gi.mul(eta)), XT.sub(gt.mul(eta))]);
    const l1 = f(XI2, XT2, S);
    expect(val(l1)).toBeLessThan(val(l0) - 0.25 * eta * gnorm * gnorm); // at least ¼ of the first-order decrease

    // Student = teacher at the teacher's scale is the minimum: zero gradient (the teacher is the target).
    // (The student's copies are separate tensors: differentiating w.r.t. the teacher's own would move the target.)
    const [SU, SV] = [TU.clone(), TV.clone()];
    const [z1, z2] = tf.grads((a: tf.Tensor, b: tf.Tensor) => affinityMimicking(a as tf.Tensor2D, b as tf.Tensor2D, ts, TU, TV, ts))([SU, SV]);
    const zmax = Math.max(...[...z1.dataSync(), ...z2.dataSync()].map(Math.abs));
    expect(zmax).toBeLessThan(1e-5);
    // …and away from it the gradient is not small (the check above can fail).
    const [w1] = tf.grads((a: tf.Tensor) => affinityMimicking(a as tf.Tensor2D, SV, ts * 2, TU, TV, ts))([SU]);
    expect(Math.max(...Array.from(w1.dataSync()).map(Math.abs))).toBeGreaterThan(1e-2);
    tf.dispose([TU, TV, XI, XT, S, gi, gt, gs, l0, l1, XI2, XT2, SU, SV, z1, z2, w1]);
    expect(tf.memory().numTensors).toBe(before);
  });

  test('affinityTerm on stored teacher features: teacher 0 or 1 by its column slice, gt (+ syn) summed; errors; no leaks', () => {
    const batch = syntheticBatch(cfg, 0, { batch: B, context: MICRO_CONTEXT, seed: 500, teacherWidth: TEST_TEACHER_WIDTH });
    const before = tf.memory().numTensors;
    for (const withSyn of [true, false]) {
      const { x, u, gt, syn } = handInputs(model, batch, 3, withSyn);
      for (const [k, ts] of [[0, 50], [1, 10]] as const) {
        const off = k === 0 ? 0 : TEST_TEACHERS[0].dim;
        const dim = TEST_TEACHERS[k].dim;
        const ti = normalize64(storedRows(batch.teacherImg!, B, off, dim));
        const tg = normalize64(storedRows(batch.teacherGt!, B, off, dim));
        const tsyn = normalize64(storedRows(batch.teacherSyn!, B, off, dim));
        const want = amRef(u, gt, 14, ti, tg, ts).am + (withSyn ? amRef(u, syn, 14, ti, tsyn, ts).am : 0);
        const term = affinityTerm(k === 0 ? { source: 'stored' } : { source: 'stored', teacher: 1, teacherScale: 10, weight: 0.3, name: 'am1' });
        expect([term.name, term.weight]).toEqual(k === 0 ? ['affinity', 1] : ['am1', 0.3]);
        const got = term.compute(x);
        expect(rel(val(got), want), `teacher ${k}, syn ${withSyn}`).toBeLessThanOrEqual(1e-5);
        got.dispose();
      }
      // The other teacher's slice gives a different value (the slice is really taken).
      const [a, b] = [affinityTerm({ source: 'stored' }).compute(x), affinityTerm({ source: 'stored', teacher: 1, teacherScale: 50 }).compute(x)];
      expect(rel(val(a), val(b))).toBeGreaterThan(1e-3);
      tf.dispose([a, b]);
      freeInputs(x);
    }
    // Errors: no teachers, teacher index out of range, synthetic captions without teacherSyn, bad options.
    const { x } = handInputs(model, batch, 4, true);
    const t = x.teacher!;
    expectMclipError(() => affinityTerm({ source: 'stored' }).compute({ ...x, teacher: undefined }), /loss term 'affinity' \(stored teacher\) needs teachers/);
    expectMclipError(() => affinityTerm({ source: 'stored', teacher: 2 }).compute(x), /teacher 2 requested, the batch has 2/);
    expectMclipError(() => affinityTerm({ source: 'stored' }).compute({ ...x, teacher: { ...t, syn: undefined } }), /with synthetic captions needs teacherSyn/);
    expectMclipError(() => affinityTerm({ source: 'stored', teacherScale: -1 }), /teacherScale must be a positive number, got -1/);
    expectMclipError(() => affinityTerm({ source: 'stored', teacher: 0.5 }), /teacher index/);
    freeInputs(x);
    expect(tf.memory().numTensors).toBe(before);
    freeBatch(batch);
  });

  test('affinityTerm with a live teacher: called with the batch, features normalised, its tensors disposed (also on error)', () => {
    const batch = syntheticBatch(cfg, 1, { batch: B, context: MICRO_CONTEXT, seed: 600, teacherWidth: TEST_TEACHER_WIDTH });
    const r = rng(5);
    const [ti, tg, ts] = [0, 1, 2].map(() => f32(randomRows(r, B, 6))); // raw, un-normalised, width 6
    const { x, u, gt, syn } = handInputs(model, batch, 6, true);
    const before = tf.memory().numTensors;
    const calls: TrainBatch[] = [];
    let handed: tf.Tensor[] = [];
    const live =
      (rows = B, withSyn = true) =>
      (b: TrainBatch): LiveTeacherFeatures => {
        calls.push(b);
        const f: LiveTeacherFeatures = { img: t2d(ti.slice(0, rows)), gt: t2d(tg), syn: withSyn ? t2d(ts) : undefined };
        handed = [f.img, f.gt, ...(f.syn ? [f.syn] : [])];
        return f;
      };
    const want = (scale: number) =>
      amRef(u, gt, 14, normalize64(ti), normalize64(tg), scale).am + amRef(u, syn, 14, normalize64(ti), normalize64(ts), scale).am;
    for (const scale of [50, 10]) {
      const got = affinityTerm({ source: live(), teacherScale: scale === 50 ? undefined : scale }).compute(x);
      expect(rel(val(got), want(scale)), `teacher scale ${scale}`).toBeLessThanOrEqual(1e-5);
      expect(handed.every((h) => h.isDisposed)).toBe(true);
      got.dispose();
    }
    expect(calls).toEqual([batch, batch]);
    expect(calls[0]).toBe(batch);
    expect(tf.memory().numTensors).toBe(before);
    expectMclipError(() => affinityTerm({ source: live(B - 1) }).compute(x), /live teacher image features have shape \[4,6\], expected \[5, D_t\]/);
    expect(handed.every((h) => h.isDisposed)).toBe(true);
    expectMclipError(() => affinityTerm({ source: live(B, false) }).compute(x), /needs the live teacher's syn features/);
    expect(handed.every((h) => h.isDisposed)).toBe(true);
    expectMclipError(() => affinityTerm({ source: live(), teacher: 1 }), /picks a stored teacher/);
    expect(tf.memory().numTensors).toBe(before);
    freeInputs(x);
    freeBatch(batch);
  });

  test('tinyclipTerms: weights (1 − λ), λ(1 − α), λα over the grid; form tinyclip; the sparsity weight stays live; one-line errors', () => {
    const sp: LossTerm = { name: 'lagrangian', weight: 1, compute: (x) => x.scale.mul(0) as tf.Scalar };
    const grid = [0, 0.5, 1];
    for (const lambda of grid) {
      for (const alpha of grid) {
        for (const distill of ['affinity', 'kd'] as const) {
          const terms = tinyclipTerms({ lambda, alpha, distill, sparsity: sp });
          expect(terms.map((t) => [t.name, t.weight])).toEqual([
            ['contrastive', 1 - lambda],
            [distill === 'kd' ? 'distill' : 'affinity', lambda * (1 - alpha)],
            ['lagrangian', lambda * alpha],
          ]);
        }
      }
      // α = 0 needs no sparsity term.
      expect(tinyclipTerms({ lambda, alpha: 0, distill: 'affinity' }).map((t) => t.name)).toEqual(['contrastive', 'affinity']);
    }
    expect(tinyclipDefaults()).toEqual({ form: 'tinyclip', distill: 'affinity', teacherScale: 50, source: 'stored' });
    const tc = tinyclipTerms({ ...tinyclipDefaults(), sparsity: sp });
    expect(tc.map((t) => [t.name, t.weight])).toEqual([['contrastive', 0], ['affinity', 1], ['lagrangian', 1]]);
    expect(tinyclipTerms(tinyclipDefaults()).map((t) => [t.name, t.weight])).toEqual([['contrastive', 0], ['affinity', 1]]);
    // The wrapped sparsity term reads the original's weight at every step.
    const half = tinyclipTerms({ lambda: 0.5, alpha: 0.5, distill: 'affinity', sparsity: sp })[2];
    sp.weight = 2;
    expect(half.weight).toBe(0.5);
    sp.weight = 0;
    expect(half.weight).toBe(0);
    sp.weight = 1;

    for (const bad of [-0.1, 1.5, NaN]) {
      expectMclipError(() => tinyclipTerms({ lambda: bad, alpha: 0, distill: 'affinity' }), new RegExp(`lambda must be in \\[0, 1\\], got ${bad}`));
      expectMclipError(() => tinyclipTerms({ lambda: 0.5, alpha: bad, distill: 'affinity', sparsity: sp }), new RegExp(`alpha must be in \\[0, 1\\], got ${bad}`));
    }
    expectMclipError(() => tinyclipTerms({ lambda: 1, alpha: 0.5, distill: 'affinity' }), /alpha = 0.5 > 0 needs a sparsity term/);
    expectMclipError(() => tinyclipTerms({ lambda: 0, alpha: 1, distill: 'kd' }), /needs a sparsity term/);
    // A JS/CLI caller mixing the two forms (the types forbid it).
    const mixed: TinyclipTermsOptions = Object.assign(tinyclipDefaults(), { alpha: 0.5 });
    expectMclipError(() => tinyclipTerms(mixed), /form 'tinyclip' adds L_sparsity at weight 1; alpha belongs to form 'weighted'/);
    // form 'tinyclip' with the contrastive term mixed in: (1 − λ)·L_CLIP + λ·L_distill + L_sparsity.
    for (const lambda of grid) {
      expect(tinyclipTerms({ ...tinyclipDefaults(), lambda, sparsity: sp }).map((t) => [t.name, t.weight])).toEqual([['contrastive', 1 - lambda], ['affinity', lambda], ['lagrangian', 1]]);
    }
    expectMclipError(() => tinyclipTerms({ ...tinyclipDefaults(), lambda: 1.5 }), /lambda must be in \[0, 1\], got 1.5/);
    expectMclipError(() => tinyclipTerms({ lambda: 1, alpha: 0, distill: 'kd', source: () => ({ img: tf.tensor2d([[1]]), gt: tf.tensor2d([[1]]) }) }), /live teacher needs distill 'affinity'/);
    expectMclipError(() => tinyclipTerms({ lambda: 1, alpha: 0, distill: 'kd', teacherScale: 50 }), /teacherScale applies to distill 'affinity'/);
  });

  test('the composed loss of a train step equals the hand-combined terms at λ, α ∈ {0, ½, 1} (affinity and kd); no leaks', () => {
    const batch = syntheticBatch(cfg, 2, { batch: B, context: MICRO_CONTEXT, seed: 700, teacherWidth: TEST_TEACHER_WIDTH });
    const z = tf.variable(tf.scalar(0.5));
    const sparsity: LossTerm = { name: 'sparsity', compute: () => z.sub(3).square().add(1) as tf.Scalar };
    const spValue = (0.5 - 3) ** 2 + 1;
    const before = tf.memory().numTensors;
    // The individual terms, computed here from the model's features.
    const [con, am, kd] = tf.tidy(() => {
      const img = l2normalize(model.encodeImage(batch.images)) as tf.Tensor2D;
      const gtTxt = l2normalize(model.encodeText(batch.gtTokens)) as tf.Tensor2D;
      const synTxt = l2normalize(model.encodeText(batch.synTokens!)) as tf.Tensor2D;
      const scale = model.logitScaleExp();
      const [ti, tg, ts] = [batch.teacherImg!, batch.teacherGt!, batch.teacherSyn!].map((a) => tf.tensor2d(a, [B, TEST_TEACHER_WIDTH]));
      const first = (t: tf.Tensor2D) => l2normalize(t.slice([0, 0], [B, TEST_TEACHERS[0].dim])) as tf.Tensor2D;
      const c = clipLoss(img, gtTxt, scale).add(clipLoss(img, synTxt, scale));
      const a = affinityMimicking(img, gtTxt, scale, first(ti), first(tg), 50).add(affinityMimicking(img, synTxt, scale, first(ti), first(ts), 50));
      const k = distillLoss(img, gtTxt, scale, ti, tg, TEST_TEACHERS).add(distillLoss(img, synTxt, scale, ti, ts, TEST_TEACHERS));
      return [c, a, k].map(val);
    });
    expect(rel(am, kd)).toBeGreaterThan(1e-3); // the two distill kinds are told apart
    const run = (opts: TinyclipTermsOptions): { total: number; losses: Record<string, number> } => {
      const got = lossAndGrads(model, batch, { losses: tinyclipTerms(opts), teachers: TEST_TEACHERS, variables: [model.logitScale, z] });
      const out = { total: val(got.loss), losses: Object.fromEntries(Object.entries(got.losses).map(([k, v]) => [k, val(v)])) };
      tf.dispose([got.loss, ...Object.values(got.losses), ...Object.values(got.grads)]);
      return out;
    };
    for (const distill of ['affinity', 'kd'] as const) {
      const dv = distill === 'kd' ? kd : am;
      const dname = distill === 'kd' ? 'distill' : 'affinity';
      for (const lambda of [0, 0.5, 1]) {
        for (const alpha of [0, 0.5, 1]) {
          const want = (1 - lambda) * con + lambda * (1 - alpha) * dv + lambda * alpha * spValue;
          const got = run({ lambda, alpha, distill, sparsity });
          expect(rel(got.total, want), `${distill} λ ${lambda} α ${alpha}`).toBeLessThanOrEqual(1e-5);
          const active: Record<string, number> = {};
          if (lambda < 1) active.contrastive = con;
          if (lambda * (1 - alpha) > 0) active[dname] = dv;
          if (lambda * alpha > 0) active.sparsity = spValue;
          expect(Object.keys(got.losses)).toEqual(Object.keys(active));
          for (const [k, v] of Object.entries(active)) expect(rel(got.losses[k], v), `${distill} ${k}`).toBeLessThanOrEqual(1e-5);
        }
      }
    }
    // TinyCLIP's form: L_AM + L_sparsity, twice the λ = 1, α = ½ objective.
    const tc = run({ ...tinyclipDefaults(), sparsity });
    expect(rel(tc.total, am + spValue)).toBeLessThanOrEqual(1e-5);
    expect(rel(tc.total, 2 * run({ lambda: 1, alpha: 0.5, distill: 'affinity', sparsity }).total)).toBeLessThanOrEqual(1e-6);
    // … and with the contrastive term mixed in at λ = ½: ½·L_CLIP + ½·L_AM + L_sparsity.
    for (const distill of ['affinity', 'kd'] as const) {
      const mix = run({ form: 'tinyclip', distill, lambda: 0.5, sparsity, ...(distill === 'affinity' ? { teacherScale: 50 } : {}) });
      expect(rel(mix.total, 0.5 * con + 0.5 * (distill === 'kd' ? kd : am) + spValue), `tinyclip form λ ½ ${distill}`).toBeLessThanOrEqual(1e-5);
    }
    expect(tf.memory().numTensors).toBe(before);
    z.dispose();
    freeBatch(batch);
  });
});
