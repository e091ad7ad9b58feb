import { describe, expect, test } from 'vitest';
import { buildZeroShotClassifier, rankOf, zeroShotLogits, zeroShotMetrics } from '../../src/eval/zero-shot.js';
import { retrievalMetrics } from '../../src/eval/retrieval.js';
import { matMulT, matMulTLoop } from '../../src/eval/embed.js';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { fillTemplate, OPENAI_IMAGENET_TEMPLATES, resolveTemplates, SIMPLE_IMAGENET_TEMPLATES } from '../../src/eval/templates.js';

const f32 = (rows: number[][]) => Float32Array.from(rows.flat());

describe('zero-shot', () => {
  test('templates', () => {
    expect(OPENAI_IMAGENET_TEMPLATES).toHaveLength(80);
    expect(SIMPLE_IMAGENET_TEMPLATES).toHaveLength(7);
    expect(fillTemplate('a photo of a {}.', 'dog')).toBe('a photo of a dog.');
    expect(resolveTemplates('emoji').length).toBeGreaterThan(2);
    expect(() => resolveTemplates('nope')).toThrow(/unknown template set/);
  });

  test('classifier: normalise each prompt, average, re-normalise', () => {
    // class 0: [10,10,0] and [1,-1,0] → unit vectors average to +x (a plain mean would not);
    // class 1: two prompts along +y of different norms; class 2: along +z.
    const text = f32([
      [10, 10, 0],
      [1, -1, 0],
      [0, 3, 0],
      [0, 0.5, 0],
      [0, 0, 2],
      [0, 0, 7],
    ]);
    const clf = buildZeroShotClassifier(text, 3, 2, 3);
    const w = Array.from(clf.weights);
    const id = [1, 0, 0, 0, 1, 0, 0, 0, 1];
    w.forEach((v, i) => expect(v).toBeCloseTo(id[i], 6));
  });

  test('toy set: top-1 exactly 2/3, top-5 (capped at 3 classes) 1, per-class, confusion', () => {
    const clf = buildZeroShotClassifier(f32([[1, 0, 0], [0, 1, 0], [0, 0, 1]]), 3, 1, 3);
    const images = f32([
      [1, 0.1, 0], // label 0 → predicted 0
      [0.1, 1, 0], // label 1 → predicted 1
      [0.9, 0, 0.2], // label 2 → predicted 0 (label ranked 2nd)
    ]);
    const logits = zeroShotLogits(images, 3, clf);
    const m = zeroShotMetrics(logits, [0, 1, 2], 3);
    expect(m.top1).toBeCloseTo(2 / 3, 12);
    expect(m.top5K).toBe(3);
    expect(m.top5).toBe(1);
    expect(m.perClass).toEqual([1, 1, 0]);
    expect(m.meanPerClass).toBeCloseTo(2 / 3, 12);
    expect(m.confusion).toEqual([
      [1, 0, 0],
      [0, 1, 0],
      [1, 0, 0],
    ]);
    expect(Array.from(m.predictions)).toEqual([0, 1, 0]);
    // logits are scaled cosine similarities
    expect(logits[0]).toBeCloseTo(100 / Math.hypot(1, 0.1), 4);
  });

  test('top-5 with more classes and a class without samples', () => {
    const c = 7;
    const logits = new Float32Array(2 * c);
    // sample 0: label 6 ranked 5th (top-5 hit, top-1 miss); sample 1: label 6 ranked 6th (miss)
    [7, 6, 5, 4, 0, 1, 2].forEach((v, j) => (logits[j] = v));
    [7, 6, 5, 4, 3, 2, 1].forEach((v, j) => (logits[c + j] = v));
    expect(rankOf(logits, 0, c, 6)).toBe(4);
    const m = zeroShotMetrics(logits, [6, 5], c);
    expect(m.top1).toBe(0);
    expect(m.top5).toBe(0.5);
    expect(Number.isNaN(m.perClass[0])).toBe(true);
    expect(m.confusion[6][0]).toBe(1);
    expect(() => zeroShotMetrics(logits, [6, 9], c)).toThrow(/outside/);
  });
});

describe('retrieval', () => {
  test('several captions per image: known ranks both ways', () => {
    const images = f32([
      [1, 0, 0, 0],
      [0, 1, 0, 0],
      [0, 0, 1, 0],
      [0, 0, 0, 1],
    ]);
    const texts = f32([
      [1, 0, 0, 0], // → img 0, rank 0
      [0.5, 1, 0, 0], // → img 0, rank 1 (img 1 first)
      [0, 1, 0, 0], // → img 1, rank 0
      [0, 0.2, 0.5, 1], // → img 2, rank 1 (img 3 first)
      [0.3, 0.2, 0.1, 0], // → img 3, rank 3
      [0, 0, 0.9, 0.1], // → img 3, rank 1
    ]);
    const r = retrievalMetrics(images, texts, 4, [0, 0, 1, 2, 3, 3]);
    expect(Array.from(r.t2iRanks)).toEqual([0, 1, 0, 1, 3, 1]);
    expect(Array.from(r.i2tRanks)).toEqual([0, 0, 1, 1]);
    expect(r.t2i).toEqual({ r1: 2 / 6, r5: 1, r10: 1 });
    expect(r.i2t).toEqual({ r1: 0.5, r5: 1, r10: 1 });
    expect(r.meanR1).toBeCloseTo((0.5 + 2 / 6) / 2, 12);
  });

  test('R@1/5/10 cut-offs with 12 images', () => {
    const n = 12;
    const ranks = [0, 4, 5, 9, 10, 11];
    const images = new Float32Array(n * n);
    for (let i = 0; i < n; i++) images[i * n + i] = 1;
    const texts = new Float32Array(ranks.length * n);
    ranks.forEach((r, t) => {
      texts[t * n + t] = 0.5; // target image t
      const others = [...Array(n).keys()].filter((j) => j !== t).slice(0, r);
      for (const j of others) texts[t * n + j] = 1;
    });
    const m = retrievalMetrics(images, texts, n, [0, 1, 2, 3, 4, 5]);
    expect(Array.from(m.t2iRanks)).toEqual(ranks);
    expect(m.t2i.r1).toBeCloseTo(1 / 6, 12);
    expect(m.t2i.r5).toBeCloseTo(2 / 6, 12);
    expect(m.t2i.r10).toBeCloseTo(4 / 6, 12);
    // images 6..11 have no caption: skipped in i2t
    expect(Array.from(m.i2tRanks.slice(6))).toEqual([-1, -1, -1, -1, -1, -1]);
    expect(() => retrievalMetrics(images, texts, n, [0, 1, 2, 3, 4, 12])).toThrow(/outside/);
  });
});

describe('matMulT', () => {
  let seed = 7;
  const r = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648) * 2 - 1;
  test('the JS loop is bit-identical to the plain float64-accumulated loop (row counts 0–9: the 4-row blocks and the tail)', () => {
    const [m, dim] = [23, 19];
    const b = Float32Array.from({ length: m * dim }, r);
    for (let n = 0; n <= 9; n++) {
      const a = Float32Array.from({ length: n * dim }, r);
      const want = new Float32Array(n * m);
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < m; j++) {
          let s = 0;
          for (let k = 0; k < dim; k++) s += a[i * dim + k] * b[j * dim + k];
          want[i * m + j] = s;
        }
      }
      expect(matMulTLoop(a, n, b, m, dim), `n ${n}`).toEqual(want);
      expect(matMulT(a, n, b, m, dim, { backend: false }), `n ${n}`).toEqual(want);
    }
  });
  test('on the backend (wasm): the loop within float32 rounding, in one block and in row blocks; nothing leaks', async () => {
    await initBackend({ backend: 'wasm', quiet: true });
    const [n, m, dim] = [37, 23, 128];
    const a = Float32Array.from({ length: n * dim }, r);
    const b = Float32Array.from({ length: m * dim }, r);
    const want = matMulTLoop(a, n, b, m, dim);
    const before = tf.memory().numTensors;
    for (const blockElems of [undefined, 5 * m, 1, 100 * m]) {
      const got = matMulT(a, n, b, m, dim, { blockElems });
      expect(got).toHaveLength(n * m);
      let worst = 0;
      for (let i = 0; i < n * m; i++) worst = Math.max(worst, Math.abs(got[i] - want[i]));
      expect(worst, `block ${blockElems}`).toBeLessThan(1e-5);
      expect(got).not.toEqual(want.map(() => 0));
    }
    expect(tf.memory().numTensors).toBe(before);
    expect(matMulT(a, 0, b, m, dim)).toHaveLength(0);
  });
});
