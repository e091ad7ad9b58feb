/**
 * ToMe token merging in the text tower (src/merge/tome.ts; issue 12 item 3): merge 0 is a bit-identical
 * no-op, protected tokens (start, end) survive unmerged, pads never merge with content, sizes add up and
 * reach later layers through proportional attention, mixed-length batches equal per-caption runs.
 */
import { describe, expect, it } from 'vitest';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import type { TextTransformer } from '../../src/base/model/text-transformer.js';
import { applyTokenReduction } from '../../src/prune/reduction.js';
import { bipartiteGroups, mergeablePairs, tokenMerging, type MatchKind, type TokenMergeOptions } from '../../src/merge/tome.js';
import { truncatePadding } from '../../src/prune/truncate.js';
import { hookGroup } from '../../src/prune/hook-group.js';
import { relErr } from '../model/helpers.js';
import { MIXED, S, finalView, perCaption, projectRows, runWith, tokens, towerCache } from '../prune/reduce-helpers.js';

await initBackend({ backend: 'wasm', quiet: true });

const tower = towerCache();
const merging = (o: TokenMergeOptions) => (t: TextTransformer) => tokenMerging(t, o);
const TWO: TokenMergeOptions = { layers: [{ layer: 0, merge: 4 }, { layer: 1, merge: 3 }] };

describe('ToMe token merging', () => {
  it('bipartite matching: A = even, B = odd, best pairs first, protected and pad↔content pairs never merge', () => {
    const n = 6;
    // kinds: 0 SOT (protected), content, content, content, pad, pad
    const kinds: MatchKind[] = [0, 1, 1, 1, 2, 2];
    const sim = new Float32Array(n * n).fill(0);
    const set = (a: number, b: number, v: number) => ((sim[a * n + b] = v), (sim[b * n + a] = v));
    set(0, 1, 0.99); // protected: ignored
    set(2, 1, 0.5);
    set(2, 3, 0.7);
    set(4, 3, 0.95); // pad ↔ content: blocked
    set(4, 5, 0.1);
    expect(bipartiteGroups(sim, kinds, n, 1)).toEqual([[0], [1], [2, 3], [4], [5]]);
    expect(bipartiteGroups(sim, kinds, n, 2)).toEqual([[0], [1], [2, 3], [4, 5]]);
    expect(bipartiteGroups(sim, kinds, n, 3)).toBeNull();
    expect(mergeablePairs(kinds, n)).toBe(2); // A = {2 content, 4 pad}: each has a partner of its kind in B = {1, 3 content; 5 pad}
    expect(mergeablePairs([0, 1, 1, 0], 4)).toBe(1);
    expect(mergeablePairs([0, 1, 0, 2], 4)).toBe(0);
    expect(() => tokenMerging(tower('causal'), { layers: [{ layer: 0, merge: 1.5 }] })).toThrow(/non-negative integer/);
    expect(() => tokenMerging(tower('mct'), { layers: [{ layer: 4, merge: 2 }] })).toThrow(/transformer layers only; text layer 4 is a RepMixerBlock/);
  });

  it('merge count 0 installs nothing and is bit-identical (base and mct)', () => {
    const ids = tokens(MIXED);
    try {
      for (const kind of ['non-causal', 'mct'] as const) {
        const t = tower(kind);
        const plain = runWith(t, ids);
        const h = tokenMerging(t, { layers: [{ layer: 1, merge: 0 }, { layer: 2, merge: 0 }] });
        expect(t.hasHooks()).toBe(false);
        h.remove();
        expect(runWith(t, ids, merging({ layers: [{ layer: 1, merge: 0 }] }))).toEqual(plain);
      }
    } finally {
      ids.dispose();
    }
  });

  it('start and end tokens survive unmerged, sizes add up to the context, pooling reads the EOT row', () => {
    const ids = tokens(MIXED);
    try {
      for (const kind of ['causal', 'non-causal'] as const) {
        const t = tower(kind);
        const v = finalView(t, ids, merging(TWO));
        expect(v.n).toBe(S - 7);
        for (let b = 0; b < MIXED.length; b++) {
          expect(v.positions![b][0]).toBe(0);
          expect(v.sizes![b][0]).toBe(1);
          expect(v.positions![b][v.eot[b]]).toBe(MIXED[b]);
          expect(v.sizes![b][v.eot[b]]).toBe(1);
          expect(v.sizes![b].reduce((x, y) => x + y, 0)).toBe(S);
          expect([...v.positions![b]].sort((x, y) => x - y)).toEqual(v.positions![b]);
        }
        expect(relErr(v.out, projectRows(t, v.features, v.eot))).toBeLessThanOrEqual(1e-6);
        v.features.dispose();
        // A causal EOT never sees the pads, so merges among pads change nothing: at layer 0 the two most similar
        // pairs of this micro tower are pad pairs (same id, neighbouring positions) in every row.
        if (kind === 'causal') {
          const padsOnly = runWith(t, ids, merging({ layers: [{ layer: 0, merge: 2 }] }));
          expect(relErr(runWith(t, ids), padsOnly)).toBeLessThanOrEqual(1e-5);
        }
      }
    } finally {
      ids.dispose();
    }
  });

  it('sizes reach later layers: merging identical pads under proportional attention leaves a non-causal tower unchanged', () => {
    const t = tower('non-causal');
    const ids = tokens(MIXED);
    // Make every pad an identical input: the positional rows after the shortest caption's EOT all equal.
    const pos = t.namedParams().find(([n]) => n === 'positional_embedding.pos_embed.pos_embed')![1].variable;
    const saved = tf.keep(pos.clone());
    try {
      const first = Math.min(...MIXED) + 1;
      tf.tidy(() => pos.assign(tf.concat([pos.slice([0, 0], [first, -1]), tf.tile(pos.slice([first, 0], [1, -1]), [S - first, 1])])));
      const same = runWith(t, ids);
      // Identical pads have cosine 1, so the 3 + 2 merges all go to pad pairs (row eot 9 has 3 even pads).
      const o: TokenMergeOptions = { layers: [{ layer: 0, merge: 3 }, { layer: 1, merge: 2 }] };
      const v = finalView(t, ids, merging(o));
      expect(v.n).toBe(S - 5);
      expect(Math.max(...v.sizes!.flat())).toBeGreaterThan(1);
      v.features.dispose();
      expect(relErr(same, v.out)).toBeLessThanOrEqual(1e-5);
    } finally {
      pos.assign(saved);
      saved.dispose();
      ids.dispose();
    }
  });

  it('a batch merges at most what its row with the fewest allowed pairs can: short captions after truncate', () => {
    // Truncated to 4 slots: [SOT c c EOT] has one content pair, [SOT c EOT pad] none; r = 4 is capped to 0.
    const both = (r: number) => (t: TextTransformer) => hookGroup([truncatePadding(t), tokenMerging(t, { layers: [{ layer: 0, merge: r }] })]);
    const t = tower('causal');
    for (const [eot, n] of [[[3, 2], 4], [[3], 3], [[9], 6]] as const) {
      const ids = tokens([...eot]);
      try {
        const v = finalView(t, ids, both(4));
        // [9] alone: 10 slots, A = {2, 4, 6, 8} content → 4 merges; [3] alone: 1; [3, 2]: 0
        expect(v.n, `eot ${eot.join(',')}`).toBe(n);
        v.features.dispose();
      } finally {
        ids.dispose();
      }
    }
  });

  it('mixed-length batches equal per-caption runs', () => {
    const ids = tokens(MIXED);
    try {
      for (const kind of ['causal', 'non-causal'] as const) {
        const t = tower(kind);
        const batch = runWith(t, ids, merging(TWO));
        expect(relErr(runWith(t, ids), batch)).toBeGreaterThan(1e-5);
        expect(relErr(perCaption(t, MIXED, merging(TWO)), batch)).toBeLessThanOrEqual(1e-5);
      }
    } finally {
      ids.dispose();
    }
  });

  it('pruning then merging in the same layer (PuMer order): the merge matches the kept tokens; batches equal per-caption runs', () => {
    const ids = tokens(MIXED);
    const both = (tw: TextTransformer) => applyTokenReduction(tw, { prune: [{ layer: 1, keep: 0.5 }], merge: [{ layer: 1, merge: 2 }, { layer: 2, merge: 1 }] });
    try {
      for (const kind of ['causal', 'non-causal'] as const) {
        const t = tower(kind);
        const v = finalView(t, ids, both);
        expect(v.n).toBe(8 - 2 - 1);
        for (let b = 0; b < MIXED.length; b++) expect(v.positions![b][v.eot[b]]).toBe(MIXED[b]);
        v.features.dispose();
        expect(relErr(perCaption(t, MIXED, both), runWith(t, ids, both))).toBeLessThanOrEqual(1e-5);
      }
    } finally {
      ids.dispose();
    }
  });

  it('gradients reach the merged tokens and nothing leaks', () => {
    const t = tower('non-causal');
    const ids = tokens([5, 8]);
    const emb = t.namedParams().find(([n]) => n === 'embedding_layer.weight')![1].variable;
    const before = tf.memory().numTensors;
    const h = tokenMerging(t, TWO);
    try {
      const { value, grads } = tf.variableGrads(() => t.forward(ids).square().sum() as tf.Scalar, [emb]);
      // Pad id 0: every pad token is (at most) merged, never dropped, so its embedding row has gradient.
      expect(tf.tidy(() => grads[emb.name].slice([0, 0], [1, -1]).abs().sum().dataSync()[0])).toBeGreaterThan(0);
      tf.dispose([value, grads[emb.name]]);
    } finally {
      h.remove();
      ids.dispose();
    }
    expect(tf.memory().numTensors).toBe(before - 1);
  });
});
