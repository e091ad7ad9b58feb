/**
 * Attention-informed token pruning of the text tower (src/prune/attention-prune.ts; issue 12 item 2): keep 1
 * is a bit-identical no-op, the start and end tokens survive, pooling reads the EOT row after reduction,
 * mixed-length batches equal per-caption runs, the mask implementation equals the gather one, and gradients
 * (checked by finite differences) flow through the kept tokens.
 */
import { describe, expect, it } from 'vitest';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import type { TextTransformer } from '../../src/base/model/text-transformer.js';
import { attentionPruning, keptCount, selectKept, type AttentionPruneOptions } from '../../src/prune/attention-prune.js';
import { relErr } from '../model/helpers.js';
import { MICRO_VOCAB } from '../micro-config.js';
import { MIXED, S, finalView, perCaption, projectRows, runWith, tokens, towerCache } from './reduce-helpers.js';

await initBackend({ backend: 'wasm', quiet: true });

const tower = towerCache();
const prune = (o: AttentionPruneOptions) => (t: TextTransformer) => attentionPruning(t, o);
const TWO: AttentionPruneOptions = { layers: [{ layer: 0, keep: 0.5 }, { layer: 2, keep: 0.6 }] };

describe('attention-informed pruning', () => {
  it('counts and selection: round(keep·N) with SOT/EOT protected, highest scores next, ascending order', () => {
    expect(keptCount(16, 0.5)).toBe(8);
    expect(keptCount(16, 0.01)).toBe(2);
    expect(keptCount(2, 0.1)).toBe(2);
    const scores = [0.1, 0.9, 0.3, 0.0, 0.8, 0.2];
    const protect = Uint8Array.from([1, 0, 0, 1, 0, 0]);
    expect(selectKept(scores, protect, new Uint8Array(6).fill(1), 1, 6, 4)).toEqual([[0, 1, 3, 4]]);
    expect(selectKept(scores, protect, Uint8Array.from([1, 0, 1, 1, 1, 1]), 1, 6, 4)).toEqual([[0, 2, 3, 4]]);
    expect(() => attentionPruning(tower('causal'), { layers: [{ layer: 0, keep: 0 }] })).toThrow(/keep ratio must lie in \(0, 1\]/);
    const mct = tower('mct');
    expect(() => attentionPruning(mct, { layers: [{ layer: 0, keep: 0.5 }] })).toThrow(/transformer layers only; text layer 0 is a RepMixerBlock/);
  });

  it('keep ratio 1 installs nothing and is bit-identical (base and mct)', () => {
    const ids = tokens(MIXED);
    try {
      for (const kind of ['causal', 'mct'] as const) {
        const t = tower(kind);
        const plain = runWith(t, ids);
        const h = attentionPruning(t, { layers: [{ layer: 1, keep: 1 }, { layer: 2, keep: 1 }], accumulate: true });
        expect(t.hasHooks()).toBe(false);
        h.remove();
        expect(runWith(t, ids, prune({ layers: [{ layer: 1, keep: 1 }], implementation: 'mask' }))).toEqual(plain);
      }
    } finally {
      ids.dispose();
    }
  });

  it('start and end tokens survive; pooling reads the EOT row of the reduced sequence', () => {
    const ids = tokens(MIXED);
    try {
      for (const kind of ['causal', 'non-causal'] as const) {
        const t = tower(kind);
        const v = finalView(t, ids, prune(TWO));
        expect(v.n).toBe(keptCount(keptCount(S, 0.5), 0.6)); // 16 → 8 → 5
        for (let b = 0; b < MIXED.length; b++) {
          expect(v.positions![b][0]).toBe(0);
          expect(v.positions![b][v.eot[b]]).toBe(MIXED[b]);
          expect([...v.positions![b]].sort((x, y) => x - y)).toEqual(v.positions![b]);
        }
        expect(relErr(v.out, projectRows(t, v.features, v.eot))).toBeLessThanOrEqual(1e-6);
        expect(relErr(v.out, projectRows(t, v.features, MIXED.map(() => v.n - 1)))).toBeGreaterThan(1e-3);
        v.features.dispose();
      }
    } finally {
      ids.dispose();
    }
  });

  it('on a causal tower the EOT pays pads no attention: pruning keeps content first (exact while only pads go)', () => {
    const t = tower('causal');
    const ids = tokens([3, 6]);
    try {
      // 16 → 10 tokens: both rows have ≤ 7 real tokens, so only pads (score 0) are dropped — exact.
      const v = finalView(t, ids, prune({ layers: [{ layer: 0, keep: 10 / 16 }] }));
      expect(v.n).toBe(10);
      expect(v.positions![0].slice(0, 4)).toEqual([0, 1, 2, 3]);
      expect(v.positions![1].slice(0, 7)).toEqual([0, 1, 2, 3, 4, 5, 6]);
      expect(relErr(runWith(t, ids), v.out)).toBeLessThanOrEqual(1e-5);
      v.features.dispose();
    } finally {
      ids.dispose();
    }
  });

  it('mixed-length batches equal per-caption runs (gather and mask, with accumulation and pads-first)', () => {
    const ids = tokens(MIXED);
    try {
      for (const kind of ['causal', 'non-causal'] as const) {
        for (const o of [TWO, { ...TWO, accumulate: true, padsFirst: true }, { ...TWO, implementation: 'mask' as const }]) {
          const t = tower(kind);
          const batch = runWith(t, ids, prune(o));
          expect(relErr(perCaption(t, MIXED, prune(o)), batch)).toBeLessThanOrEqual(1e-5);
        }
      }
    } finally {
      ids.dispose();
    }
  });

  it('the mask implementation (−∞ logits for dropped keys) equals the gather one', () => {
    const ids = tokens(MIXED);
    try {
      for (const kind of ['causal', 'non-causal'] as const) {
        const t = tower(kind);
        for (const o of [TWO, { ...TWO, accumulate: true }, { layers: [{ layer: 1, keep: 0.3 }], padsFirst: true }]) {
          const gathered = runWith(t, ids, prune(o));
          const masked = runWith(t, ids, prune({ ...o, implementation: 'mask' }));
          expect(relErr(gathered, masked)).toBeLessThanOrEqual(1e-5);
          expect(relErr(runWith(t, ids), gathered)).toBeGreaterThan(1e-4); // it did prune content
        }
      }
    } finally {
      ids.dispose();
    }
  });

  it('gradients flow through the kept tokens (finite differences) and nothing leaks', () => {
    const t = tower('non-causal');
    const ids = tokens([5, 8]);
    const emb = t.namedParams().find(([n]) => n === 'embedding_layer.weight')![1].variable;
    const fc = t.namedParams().find(([n]) => n === 'transformer.2.pre_norm_ffn.1.weight')![1].variable;
    const w = tf.randomNormal([2, 64], 0, 1, 'float32', 5);
    const before = tf.memory().numTensors;
    const h = attentionPruning(t, TWO);
    try {
      const loss = () => t.forward(ids).mul(w).sum() as tf.Scalar;
      const { value, grads } = tf.variableGrads(loss, [emb, fc]);
      value.dispose();
      // The EOT id's row (a kept token of every caption) and a weight of the last FFN (which sees only kept tokens).
      const probes: Array<[tf.Variable, number[]]> = [
        [emb, [MICRO_VOCAB - 1, 3]],
        [emb, [MICRO_VOCAB - 2, 10]],
        [fc, [5, 7]],
      ];
      for (const [v, at] of probes) {
        const analytic = tf.tidy(() => grads[v.name].slice(at, [1, 1]).dataSync()[0]);
        const eps = 1e-2;
        const at1 = (d: number) =>
          tf.tidy(() => {
            const orig = v.clone();
            v.assign(v.add(tf.scatterND([at], [d], v.shape)));
            const l = loss().dataSync()[0];
            v.assign(orig);
            return l;
          });
        const fd = (at1(eps) - at1(-eps)) / (2 * eps);
        expect(Math.abs(analytic)).toBeGreaterThan(1e-4);
        expect(Math.abs(fd - analytic)).toBeLessThanOrEqual(2e-2 * Math.abs(analytic) + 1e-4);
      }
      tf.dispose(Object.values(grads));
    } finally {
      h.remove();
      w.dispose();
    }
    expect(tf.memory().numTensors).toBe(before - 1);
  });
});
