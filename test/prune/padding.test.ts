/**
 * Padding policies of the text tower (src/prune/padding.ts; methods.md §4.5, issue 12 item 1): `as-trained`
 * is a bit-identical no-op, `truncate` is exact on causal towers and approximate on `mct`, `merge-pads` is
 * exact where its identity holds (causal towers; identical pad states), and mixed-length batches equal
 * per-caption runs wherever the policy promises it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import type { TextTransformer } from '../../src/base/model/text-transformer.js';
import { TEXT_TOKENS, type TextTokenState } from '../../src/base/model/text-context.js';
import { applyTextPadding, parseTextPadding, TEXT_PADDINGS, type TextPadding, type TextPaddingOptions } from '../../src/prune/padding.js';
import { truncatedLength } from '../../src/prune/truncate.js';
import { padMergeLayout } from '../../src/prune/merge-pads.js';
import { padMask, padsFirstScores } from '../../src/prune/pad-tokens.js';
import { proportionalProbs } from '../../src/merge/proportional-attention.js';
import { MICRO_VOCAB } from '../micro-config.js';
import { relErr } from '../model/helpers.js';
import { MIXED, S, perCaption as perCaptionWith, runWith, tokens, towerCache } from './reduce-helpers.js';

await initBackend({ backend: 'wasm', quiet: true });

const tower = towerCache(2);

/** Output of the tower under a policy (hooks removed afterwards). */
const run = (t: TextTransformer, ids: tf.Tensor2D, policy: TextPadding | TextPaddingOptions = 'as-trained'): Float32Array =>
  runWith(t, ids, (m) => applyTextPadding(m, policy));

/** Each caption alone, outputs concatenated. */
const perCaption = (t: TextTransformer, eot: number[], policy: TextPadding | TextPaddingOptions): Float32Array =>
  perCaptionWith(t, eot, (m) => applyTextPadding(m, policy));

/** Sequence length seen by the final LayerNorm under a policy. */
function finalLength(t: TextTransformer, ids: tf.Tensor2D, policy: TextPadding | TextPaddingOptions): number {
  let n = -1;
  const h = t.finalLayerNorm.registerForwardHook((_m, x) => {
    n = x.shape[1] as number;
  });
  try {
    run(t, ids, policy);
  } finally {
    h.remove();
  }
  return n;
}

describe('padding policies', () => {
  let ids: tf.Tensor2D;
  beforeAll(() => {
    ids = tokens(MIXED);
  });
  afterAll(() => ids.dispose());

  it('names parse; unknown names and misplaced options fail with the known policies', () => {
    expect(TEXT_PADDINGS).toEqual(['as-trained', 'truncate', 'pads-first', 'merge-pads']);
    expect(parseTextPadding('merge-pads')).toBe('merge-pads');
    expect(() => parseTextPadding('trim')).toThrow(/unknown text padding policy 'trim' \(known: as-trained, truncate, pads-first, merge-pads\)/);
    expect(() => applyTextPadding(tower('causal'), { policy: 'merge-pads', spare: 2 })).toThrow(/'truncate' padding policy only/);
    expect(() => applyTextPadding(tower('causal'), { policy: 'truncate', spare: -1 })).toThrow(/non-negative integer/);
  });

  it('as-trained (and pads-first without a reducer) is bit-identical to the plain tower', () => {
    for (const kind of ['causal', 'mct'] as const) {
      const t = tower(kind);
      const plain = tf.tidy(() => Float32Array.from(t.forward(ids).dataSync()));
      expect(run(t, ids, 'as-trained')).toEqual(plain);
      expect(run(t, ids, 'pads-first')).toEqual(plain);
      expect(t.hasHooks()).toBe(false);
    }
  });

  it('truncate on a causal tower equals the full context ≤ 1e-5 (mixed lengths, with and without spare pads); removing it restores the plain tower', () => {
    const t = tower('causal');
    const full = run(t, ids);
    expect(truncatedLength(MIXED, S)).toBe(10);
    expect(finalLength(t, ids, 'truncate')).toBe(10);
    expect(relErr(full, run(t, ids, 'truncate'))).toBeLessThanOrEqual(1e-5);
    expect(finalLength(t, ids, { policy: 'truncate', spare: 3 })).toBe(13);
    expect(relErr(full, run(t, ids, { policy: 'truncate', spare: 3 }))).toBeLessThanOrEqual(1e-5);
    expect(finalLength(t, ids, { policy: 'truncate', spare: 100 })).toBe(S);
    // Truncation is exact per caption too, so any batch gives every caption the same output.
    expect(relErr(perCaption(t, MIXED, 'truncate'), run(t, ids, 'truncate'))).toBeLessThanOrEqual(1e-5);
    expect(t.hasHooks()).toBe(false);
    expect(run(t, ids)).toEqual(full);
  });

  it('after truncation pooling reads the EOT row (not the last kept row), and the state records the kept positions', () => {
    const t = tower('causal');
    let feats: tf.Tensor | null = null;
    let state: { eot: number[]; positions: number[][] | null } | null = null;
    const h = t.finalLayerNorm.registerForwardHook((_m, _x, y, ctx) => {
      const s = ctx!.require(TEXT_TOKENS);
      state = { eot: Array.from(s.eot.dataSync()), positions: s.positions ? (s.positions.arraySync() as number[][]) : null };
      feats = tf.keep(y.clone());
    });
    const out = run(t, ids, 'truncate');
    h.remove();
    const f = feats as tf.Tensor | null;
    expect(f?.shape).toEqual([MIXED.length, 10, 64]);
    expect(state).toEqual({ eot: MIXED, positions: MIXED.map(() => Array.from({ length: 10 }, (_, j) => j)) });
    const rowsAt = (idx: number[]) => tf.tidy(() => Float32Array.from(tf.stack(idx.map((e, b) => f!.slice([b, e, 0], [1, 1, -1]).reshape([-1]))).matMul(t.projection).dataSync()));
    expect(relErr(out, rowsAt(MIXED))).toBeLessThanOrEqual(1e-6);
    expect(relErr(out, rowsAt(MIXED.map(() => 9)))).toBeGreaterThan(1e-2);
    f!.dispose();
  });

  it('truncate on the non-causal mct tower runs but is approximate (its pads are live tokens)', () => {
    const t = tower('mct');
    const full = run(t, ids);
    const cut = run(t, ids, 'truncate');
    expect(finalLength(t, ids, 'truncate')).toBe(10);
    expect(cut.every(Number.isFinite)).toBe(true);
    const err = relErr(full, cut);
    expect(err).toBeGreaterThan(1e-3);
    // More spare pads bring it back towards the trained behaviour; all of them is the full context.
    expect(relErr(full, run(t, ids, { policy: 'truncate', spare: 100 }))).toBeLessThanOrEqual(1e-6);
  });

  it('merge-pads on a causal tower equals as-trained ≤ 1e-5 (pads come after EOT), in a batch and per caption', () => {
    const t = tower('causal');
    const full = run(t, ids);
    expect(finalLength(t, ids, 'merge-pads')).toBe(11); // longest content 10 + one merged pad
    const merged = run(t, ids, 'merge-pads');
    expect(relErr(full, merged)).toBeLessThanOrEqual(1e-5);
    expect(relErr(perCaption(t, MIXED, 'merge-pads'), merged)).toBeLessThanOrEqual(1e-5);
  });

  it('merge-pads on a non-causal tower: exact when the pads are identical inputs, approximate when positions tell them apart', () => {
    const t = tower('non-causal');
    const full = run(t, ids);
    const merged = run(t, ids, 'merge-pads');
    // Positional embeddings make the pads differ at layer 0: an approximation, no longer the same output.
    expect(relErr(full, merged)).toBeGreaterThan(1e-4);
    // Mixed lengths still equal per-caption runs exactly (the dead slots that square the batch weigh 0).
    expect(relErr(perCaption(t, MIXED, 'merge-pads'), merged)).toBeLessThanOrEqual(1e-5);
    // Make every pad an identical input: the positional rows after the shortest caption's EOT all equal.
    const pos = t.namedParams().find(([n]) => n === 'positional_embedding.pos_embed.pos_embed')![1].variable;
    const saved = tf.keep(pos.clone());
    try {
      const first = Math.min(...MIXED) + 1;
      tf.tidy(() => pos.assign(tf.concat([pos.slice([0, 0], [first, -1]), tf.tile(pos.slice([first, 0], [1, -1]), [S - first, 1])])));
      const same = run(t, ids);
      expect(relErr(full, same)).toBeGreaterThan(1e-4); // the change did reach the output
      expect(relErr(same, run(t, ids, 'merge-pads'))).toBeLessThanOrEqual(1e-5);
    } finally {
      pos.assign(saved);
      saved.dispose();
    }
  });

  it('merge-pads on mct restores the grid for the last RepMixer block; batches equal per-caption runs', () => {
    const t = tower('mct');
    const seen: number[] = [];
    const last = t.transformer.at(t.transformer.length - 1);
    const h = last.registerForwardPreHook((_m, x, ctx) => {
      seen.push(x.shape[1] as number, ctx!.require(TEXT_TOKENS).sizes === null ? 1 : 0);
    });
    const inner: number[] = [];
    const h2 = t.transformer.at(1).registerForwardHook((_m, x) => {
      inner.push(x.shape[1] as number);
    });
    const merged = run(t, ids, 'merge-pads');
    h.remove();
    h2.remove();
    expect(inner).toEqual([11]);
    expect(seen).toEqual([S, 1]);
    expect(merged.every(Number.isFinite)).toBe(true);
    expect(relErr(run(t, ids), merged)).toBeGreaterThan(1e-4); // approximate: conv context and positions differ per pad
    expect(relErr(perCaption(t, MIXED, 'merge-pads'), merged)).toBeLessThanOrEqual(1e-5);
  });

  it('a full row (EOT in the last slot) has no pad token; a batch of full rows is left as it is', () => {
    const lay = padMergeLayout([S - 1, 2], S);
    expect(lay.n).toBe(S);
    expect(Array.from(lay.sizes.slice(0, S))).toEqual(Array(S).fill(1));
    expect(Array.from(lay.sizes.slice(S, 2 * S))).toEqual([1, 1, 1, S - 3, ...Array(S - 4).fill(0)]);
    const t = tower('non-causal');
    const full = tokens([S - 1, S - 1]);
    const mixed = tokens([S - 1, 2]);
    try {
      expect(finalLength(t, full, 'merge-pads')).toBe(S);
      expect(run(t, full, 'merge-pads')).toEqual(run(t, full));
      expect(relErr(perCaption(t, [S - 1, 2], 'merge-pads'), run(t, mixed, 'merge-pads'))).toBeLessThanOrEqual(1e-5);
    } finally {
      tf.dispose([full, mixed]);
    }
  });

  it('no tensors leak across passes, and gradients reach the kept tokens', () => {
    const t = tower('mct');
    for (const policy of ['truncate', 'merge-pads'] as const) {
      const before = tf.memory().numTensors;
      const h = applyTextPadding(t, policy);
      for (let i = 0; i < 3; i++) tf.tidy(() => t.forward(ids)).dispose();
      const emb = t.namedParams().find(([n]) => n === 'embedding_layer.weight')?.[1].variable;
      expect(emb).toBeDefined();
      const { value, grads } = tf.variableGrads(() => t.forward(ids).square().sum() as tf.Scalar, [emb!]);
      const g = grads[emb!.name];
      // Rows of ids used by the captions get gradient; row 0 is the pad id, used only by (merged) pads.
      const sot = tf.tidy(() => g.slice([MICRO_VOCAB - 2, 0], [1, -1]).abs().sum().dataSync()[0]);
      expect(sot).toBeGreaterThan(0);
      tf.dispose([value, g]);
      h.remove();
      expect(tf.memory().numTensors).toBe(before);
    }
  });
});

describe('policy building blocks', () => {
  it('proportional attention re-weighting equals softmax(logits + ln s), sizes 0 included', () => {
    const [b, h, n] = [2, 3, 5];
    const logits = tf.randomNormal([b, h, n, n], 0, 2, 'float32', 11) as tf.Tensor4D;
    const sizes = tf.tensor2d([1, 2, 3, 0, 1, 1, 1, 4, 1, 0], [b, n]);
    try {
      const got = tf.tidy(() => Float32Array.from(proportionalProbs(tf.softmax(logits) as tf.Tensor4D, sizes).dataSync()));
      const want = tf.tidy(() => Float32Array.from(tf.softmax(logits.add(tf.log(sizes).reshape([b, 1, 1, n]))).dataSync()));
      expect(relErr(want, got)).toBeLessThanOrEqual(1e-6);
      // Dead slots (size 0) get exactly no weight.
      for (let r = 0; r < b * h * n; r++) {
        const dead = Math.floor(r / (h * n)) === 0 ? 3 : 4;
        expect(got[r * n + dead]).toBe(0);
      }
    } finally {
      tf.dispose([logits, sizes]);
    }
  });

  it('padMask marks the tokens after EOT (merged pads included); pads-first gives them −∞ scores', () => {
    const ids = tokens([2, 4]);
    try {
      const state: TextTokenState = { tokens: ids, eot: tf.tensor1d([2, 4], 'int32'), positions: null, sizes: null };
      const m = tf.tidy(() => padMask(state, S).arraySync() as number[][]);
      expect(m[0]!.slice(0, 5)).toEqual([0, 0, 0, 1, 1]);
      expect(m[1]!.slice(0, 6)).toEqual([0, 0, 0, 0, 0, 1]);
      const positions = tf.tensor2d([0, 1, 2, S - 1, 0, 1, 4, S - 1], [2, 4], 'int32');
      const reduced = { ...state, positions };
      expect(tf.tidy(() => padMask(reduced, 4).arraySync())).toEqual([
        [0, 0, 0, 1],
        [0, 0, 0, 1],
      ]);
      const scores = tf.tidy(() => padsFirstScores(tf.ones([2, 4]) as tf.Tensor2D, reduced).arraySync());
      expect(scores).toEqual([
        [1, 1, 1, -Infinity],
        [1, 1, 1, -Infinity],
      ]);
      tf.dispose([state.eot, positions]);
    } finally {
      ids.dispose();
    }
  });
});
