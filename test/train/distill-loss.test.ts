import { beforeAll, describe, expect, test } from 'vitest';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { clipLoss, distillLoss, reinforcedLoss, type TeacherSpec } from '../../src/base/train/distill-loss.js';
import { constLr, cosineLr } from '../../src/base/train/schedule.js';

type M = number[][];

function rng(seed: number): () => number {
  let s = seed;
  return () => (s = (s * 1103515245 + 12345) % 2147483648) / 2147483648 - 0.5;
}
const randMat = (r: () => number, n: number, d: number): M => Array.from({ length: n }, () => Array.from({ length: d }, r));
const norm = (v: number[]): number[] => {
  const n = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
  return v.map((x) => x / n);
};
const dot = (a: number[], b: number[]) => a.reduce((s, x, i) => s + x * b[i], 0);
const logits = (a: M, b: M, s: number): M => a.map((u) => b.map((v) => s * dot(u, v)));
const tr = (a: M): M => a[0].map((_, j) => a.map((r) => r[j]));
const logSoftmaxRows = (a: M): M =>
  a.map((r) => {
    const m = Math.max(...r);
    const l = m + Math.log(r.reduce((s, x) => s + Math.exp(x - m), 0));
    return r.map((x) => x - l);
  });
const softmaxRows = (a: M): M => logSoftmaxRows(a).map((r) => r.map(Math.exp));

/** Reference L_CLIP (double precision). */
function refClip(u: M, v: M, s: number): number {
  const S = logits(u, v, s);
  const a = logSoftmaxRows(S);
  const b = logSoftmaxRows(tr(S));
  const n = u.length;
  let l = 0;
  for (let i = 0; i < n; i++) l -= a[i][i] + b[i][i];
  return l / (2 * n);
}

/** Reference L_KD (double precision); teacher slices normalised here. */
function refKd(u: M, v: M, s: number, ti: M, tt: M, teachers: TeacherSpec[]): number {
  const n = u.length;
  const P: M = u.map(() => Array(n).fill(0));
  const Q: M = u.map(() => Array(n).fill(0));
  let off = 0;
  for (const t of teachers) {
    const a = ti.map((r) => norm(r.slice(off, off + t.dim)));
    const b = tt.map((r) => norm(r.slice(off, off + t.dim)));
    off += t.dim;
    const T = logits(a, b, t.logitScale);
    const p = softmaxRows(T);
    const q = softmaxRows(tr(T));
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
      P[i][j] += p[i][j] / teachers.length;
      Q[i][j] += q[i][j] / teachers.length;
    }
  }
  const S = logits(u, v, s);
  const ls = logSoftmaxRows(S);
  const lt = logSoftmaxRows(tr(S));
  let a = 0;
  let b = 0;
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
    a -= P[i][j] * ls[i][j];
    b -= Q[i][j] * lt[i][j];
  }
  return 0.5 * (a / n + b / n);
}

const N = 6;
const D = 8;
const TEACHERS: TeacherSpec[] = [
  { dim: 5, logitScale: 100 },
  { dim: 12, logitScale: 50 },
];
const W = 17;
const SCALE = 14.3;

function data() {
  const r = rng(42);
  const img = randMat(r, N, D).map(norm);
  const gt = randMat(r, N, D).map(norm);
  const syn = randMat(r, N, D).map(norm);
  // Teacher features: correlated with the pairing so the teacher distributions are not uniform,
  // and NOT normalised (the loss normalises each slice).
  const tImg = randMat(r, N, W);
  const tGt = tImg.map((row) => row.map((x) => 0.7 * x + 0.3 * r()));
  const tSyn = tImg.map((row) => row.map((x) => 0.4 * x + 0.6 * r()));
  return { img, gt, syn, tImg, tGt, tSyn };
}

const rel = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);

describe('MobileCLIP reinforced loss vs a double-precision reference', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true, gradients: true });
  });

  test('clipLoss and distillLoss (K = 2, dims 5 and 12, 1/τ = 100 and 50)', () => {
    const d = data();
    const t = (m: M) => tf.tensor2d(m);
    const [img, gt, tImg, tGt] = [t(d.img), t(d.gt), t(d.tImg), t(d.tGt)];
    const scale = tf.scalar(SCALE);
    const ti5 = tImg.slice([0, 0], [N, 5]) as tf.Tensor2D;
    const tg5 = tGt.slice([0, 0], [N, 5]) as tf.Tensor2D;
    const before = tf.memory().numTensors;
    const c = clipLoss(img, gt, scale);
    const kd = distillLoss(img, gt, SCALE, tImg, tGt, TEACHERS);
    const refC = refClip(d.img, d.gt, SCALE);
    const refK = refKd(d.img, d.gt, SCALE, d.tImg, d.tGt, TEACHERS);
    expect(rel(c.dataSync()[0], refC)).toBeLessThan(2e-5);
    expect(rel(kd.dataSync()[0], refK)).toBeLessThan(2e-5);
    // A single teacher with a sharp temperature: the KD target is nearly one-hot on the teacher's argmax.
    const one = distillLoss(img, gt, SCALE, ti5, tg5, [TEACHERS[0]]);
    expect(rel(one.dataSync()[0], refKd(d.img, d.gt, SCALE, d.tImg, d.tGt, [TEACHERS[0]]))).toBeLessThan(2e-5);
    // Pre-normalised teacher slices give the same value (normalisation is idempotent).
    const pre = (m: M) => tf.tensor2d(m.map((r) => [...norm(r.slice(0, 5)), ...norm(r.slice(5))]));
    const [pi, pg] = [pre(d.tImg), pre(d.tGt)];
    const kd2 = distillLoss(img, gt, SCALE, pi, pg, TEACHERS);
    expect(rel(kd2.dataSync()[0], refK)).toBeLessThan(2e-5);
    tf.dispose([c, kd, one, kd2]);
    expect(tf.memory().numTensors).toBe(before + 2);
    tf.dispose([pi, pg, scale, ti5, tg5]);
    expect(() => distillLoss(img, gt, SCALE, tImg, tGt, [{ dim: 5, logitScale: 100 }])).toThrow(/expected \[6, 5\]/);
    tf.dispose([img, gt, tImg, tGt]);
    console.log(`L_CLIP ${refC.toFixed(6)}  L_KD ${refK.toFixed(6)}`);
  });

  test.each([0, 0.25, 0.75, 1])('reinforcedLoss = L(gt) + L(syn), lambda %s', (lambda) => {
    const d = data();
    const t = (m: M) => tf.tensor2d(m);
    const x = { img: t(d.img), gtTxt: t(d.gt), synTxt: t(d.syn), teacherImg: t(d.tImg), teacherGt: t(d.tGt), teacherSyn: t(d.tSyn) };
    const got = reinforcedLoss({ ...x, scale: tf.scalar(SCALE), teachers: TEACHERS, lambda });
    const L = (txt: M, tTxt: M) => (1 - lambda) * refClip(d.img, txt, SCALE) + lambda * refKd(d.img, txt, SCALE, d.tImg, tTxt, TEACHERS);
    const ref = L(d.gt, d.tGt) + L(d.syn, d.tSyn);
    expect(rel(got.dataSync()[0], ref)).toBeLessThan(2e-5);
    if (lambda === 0) {
      // Equals the plain CLIP loss of the two problems, and needs no teacher features.
      const plain = reinforcedLoss({ img: x.img, gtTxt: x.gtTxt, synTxt: x.synTxt, scale: SCALE, lambda: 0 });
      expect(rel(plain.dataSync()[0], refClip(d.img, d.gt, SCALE) + refClip(d.img, d.syn, SCALE))).toBeLessThan(2e-5);
      plain.dispose();
    }
    // Without synthetic captions: only L(gt) (not one b×2b problem).
    const gtOnly = reinforcedLoss({ img: x.img, gtTxt: x.gtTxt, scale: SCALE, teacherImg: x.teacherImg, teacherGt: x.teacherGt, teachers: TEACHERS, lambda });
    expect(rel(gtOnly.dataSync()[0], L(d.gt, d.tGt))).toBeLessThan(2e-5);
    tf.dispose([got, gtOnly, ...Object.values(x)]);
  });

  test('dL_KD/ds (autodiff) matches a central finite difference of the reference', () => {
    const d = data();
    const [img, gt, tImg, tGt] = [d.img, d.gt, d.tImg, d.tGt].map((m) => tf.tensor2d(m));
    const g = tf.grad((s: tf.Tensor) => distillLoss(img as tf.Tensor2D, gt as tf.Tensor2D, s as tf.Scalar, tImg as tf.Tensor2D, tGt as tf.Tensor2D, TEACHERS))(tf.scalar(SCALE));
    const h = 1e-4;
    const fd = (refKd(d.img, d.gt, SCALE + h, d.tImg, d.tGt, TEACHERS) - refKd(d.img, d.gt, SCALE - h, d.tImg, d.tGt, TEACHERS)) / (2 * h);
    expect(Math.abs(g.dataSync()[0] - fd)).toBeLessThan(1e-4 * Math.max(1, Math.abs(fd)));
    tf.dispose([g, img, gt, tImg, tGt]);
  });
});

describe('learning-rate schedule (open_clip cosine_lr)', () => {
  test('warm-up then cosine', () => {
    const s = { baseLr: 1e-3, warmup: 10, steps: 100 };
    const close = (a: number, b: number) => expect(Math.abs(a - b)).toBeLessThan(1e-15);
    close(cosineLr(0, s), 1e-4);
    close(cosineLr(4, s), 5e-4);
    close(cosineLr(9, s), 1e-3);
    close(cosineLr(10, s), 1e-3);
    close(cosineLr(40, s), 0.75e-3); // e = 30 of 90: ½(1 + cos(π/3))
    close(cosineLr(55, s), 0.5e-3);
    close(cosineLr(100, s), 0);
    close(cosineLr(150, s), 0);
    close(cosineLr(3, { baseLr: 2, warmup: 0, steps: 4 }), 0.5 * (1 + Math.cos((3 * Math.PI) / 4)) * 2);
    close(constLr(2, { baseLr: 1e-3, warmup: 4 }), 0.75e-3);
    close(constLr(50, { baseLr: 1e-3, warmup: 4 }), 1e-3);
  });
});
