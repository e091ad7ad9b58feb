/**
 * Token reduction in the `mct` text tower (src/prune/conv-blocks.ts, src/prune/reduction.ts; issue 12 item
 * 4): reducers act in the transformer layers only; before the last RepMixer block `restore` scatters the
 * tokens back onto the grid (pruned slots hold their state at removal, merged slots share their merged
 * state) and `compact` runs the block on the short sequence; both keep mixed-length batches equal to
 * per-caption runs, and nothing reduced installs nothing.
 */
import { afterAll, describe, expect, it } from 'vitest';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { TEXT_TOKENS } from '../../src/base/model/text-context.js';
import { RepMixerBlock } from '../../src/base/layers/repmixer-block.js';
import { applyTokenReduction, type TokenReductionOptions } from '../../src/prune/reduction.js';
import { parseConvBlockPolicy } from '../../src/prune/conv-blocks.js';
import { applyTextPadding } from '../../src/prune/padding.js';
import { relErr } from '../model/helpers.js';
import { S, makeTower, perCaption, runWith, tokens } from './reduce-helpers.js';

await initBackend({ backend: 'wasm', quiet: true });

const t = makeTower('mct'); // RepMixer, 3 transformer layers (1–3), RepMixer (4)
afterAll(() => t.dispose());
const MIXED = [3, 6, 9, 4];
const LAST = 4;
const reduce = (o: TokenReductionOptions) => (tw: typeof t) => applyTokenReduction(tw, o);

/** Runs with `o` and returns the last block's input [B, N, C] as arrays, plus whether the state there is the grid's. */
function lastBlockInput(ids: tf.Tensor2D, o: TokenReductionOptions): { x: number[][][]; gridState: boolean; out: Float32Array } {
  let x: number[][][] = [];
  let gridState = false;
  const h = t.transformer.at(LAST).registerForwardPreHook((_m, input, ctx) => {
    x = input.arraySync() as number[][][];
    const s = ctx!.require(TEXT_TOKENS);
    gridState = s.positions === null && s.sizes === null;
  });
  try {
    const out = runWith(t, ids, reduce(o));
    return { x, gridState, out };
  } finally {
    h.remove();
  }
}

describe('token reduction in mct (conv blocks)', () => {
  it('the policy names parse; reducers refuse the RepMixer blocks; nothing reduced installs nothing', () => {
    expect(parseConvBlockPolicy('compact')).toBe('compact');
    expect(() => parseConvBlockPolicy('unmerge')).toThrow(/known: restore, compact/);
    expect(() => applyTokenReduction(t, { prune: [{ layer: 0, keep: 0.5 }] })).toThrow(/transformer layers only/);
    expect(t.hasHooks()).toBe(false);
    const h = applyTokenReduction(t, { prune: [{ layer: 1, keep: 1 }], merge: [{ layer: 2, merge: 0 }] });
    expect(t.hasHooks()).toBe(false);
    h.remove();
  });

  it('restore: the last block sees the full grid; pruned slots hold their state at removal, merged slots share one state', () => {
    const ids = tokens(MIXED);
    try {
      // Pruning at layer 1 only: capture that layer's states before the reducer (registered first, so it sees them unreduced).
      let before: number[][][] = [];
      let kept: number[][] = [];
      const h1 = t.transformer.at(1).get('after_attention').registerForwardHook((_m, _x, y) => {
        before = y.arraySync() as number[][][];
      });
      const h2 = t.transformer.at(3).registerForwardHook((_m, _x, _y, ctx) => {
        kept = ctx!.require(TEXT_TOKENS).positions!.arraySync() as number[][];
      });
      const { x, gridState } = lastBlockInput(ids, { prune: [{ layer: 1, keep: 0.5 }], convBlocks: 'restore' });
      h1.remove();
      h2.remove();
      expect(gridState).toBe(true);
      expect(x[0].length).toBe(S);
      expect(kept[0].length).toBe(8);
      for (let b = 0; b < MIXED.length; b++) {
        for (let j = 0; j < S; j++) {
          if (kept[b].includes(j)) continue;
          expect(relErr(before[b][j], x[b][j])).toBeLessThanOrEqual(1e-6);
        }
      }
      // Merging only: every row has S − 5 distinct states, each merged token copied to all its slots.
      const m = lastBlockInput(ids, { merge: [{ layer: 1, merge: 3 }, { layer: 2, merge: 2 }], convBlocks: 'restore' });
      for (let b = 0; b < MIXED.length; b++) expect(new Set(m.x[b].map((r) => r.join(','))).size).toBe(S - 5);
    } finally {
      ids.dispose();
    }
  });

  it('compact: the last block runs on the reduced sequence', () => {
    const ids = tokens(MIXED);
    try {
      const { x, gridState } = lastBlockInput(ids, { prune: [{ layer: 1, keep: 0.5 }], merge: [{ layer: 2, merge: 2 }], convBlocks: 'compact' });
      expect(gridState).toBe(false);
      expect(x[0].length).toBe(6);
    } finally {
      ids.dispose();
    }
  });

  it('both policies: mixed-length batches equal per-caption runs; deviation from the unreduced tower (measured)', () => {
    const ids = tokens(MIXED);
    try {
      const full = runWith(t, ids);
      const errs: Record<string, number> = {};
      for (const convBlocks of ['restore', 'compact'] as const) {
        const o: TokenReductionOptions = { prune: [{ layer: 1, keep: 0.6 }], merge: [{ layer: 2, merge: 2 }], accumulate: true, convBlocks };
        const batch = runWith(t, ids, reduce(o));
        expect(batch.every(Number.isFinite)).toBe(true);
        expect(relErr(perCaption(t, MIXED, reduce(o)), batch)).toBeLessThanOrEqual(1e-5);
        errs[convBlocks] = relErr(full, batch);
      }
      console.log(`mct micro, prune layer 1 keep 0.6 + merge 2 at layer 2: relErr vs unreduced restore=${errs.restore.toExponential(2)} compact=${errs.compact.toExponential(2)}`);
      expect(errs.restore).toBeGreaterThan(0);
    } finally {
      ids.dispose();
    }
  });

  it('restore refuses a sequence changed outside the reducers (merge-pads), in either installation order', () => {
    const ids = tokens(MIXED);
    const o: TokenReductionOptions = { prune: [{ layer: 1, keep: 0.5 }] };
    try {
      for (const padsFirst of [true, false]) {
        const handles = padsFirst ? [applyTextPadding(t, 'merge-pads'), applyTokenReduction(t, o)] : [applyTokenReduction(t, o), applyTextPadding(t, 'merge-pads')];
        try {
          expect(() => tf.tidy(() => t.forward(ids))).toThrow(/changed outside the token reducers/);
        } finally {
          handles.forEach((h) => h.remove());
        }
      }
      expect(t.hasHooks()).toBe(false);
    } finally {
      ids.dispose();
    }
  });

  it('with reducers installed the inference shortcut (last block on the EOT rows) still runs, and gives the full path', () => {
    const ids = tokens(MIXED);
    const last = t.transformer.at(LAST);
    if (!(last instanceof RepMixerBlock)) throw new Error('the micro mct tower ends with a RepMixer block');
    let rows = 0;
    const plain = last.forwardRows.bind(last);
    last.forwardRows = (x, r) => {
      rows++;
      return plain(x, r);
    };
    try {
      for (const convBlocks of ['restore', 'compact'] as const) {
        const o: TokenReductionOptions = { prune: [{ layer: 1, keep: 0.6 }], merge: [{ layer: 2, merge: 2 }], convBlocks };
        rows = 0;
        const fast = runWith(t, ids, reduce(o));
        expect(rows, convBlocks).toBe(1);
        // a hook on the final norm turns the shortcut off: the full path
        const full = runWith(t, ids, (tw) => {
          const a = applyTokenReduction(tw, o);
          const b = tw.finalLayerNorm.registerForwardHook(() => undefined);
          return { remove: () => (b.remove(), a.remove()) };
        });
        expect(rows, convBlocks).toBe(1);
        expect(relErr(fast, full), convBlocks).toBeLessThan(1e-6);
      }
      // a hook on the last block itself turns it off too
      const h = last.registerForwardPreHook(() => undefined);
      rows = 0;
      runWith(t, ids);
      h.remove();
      expect(rows).toBe(0);
    } finally {
      last.forwardRows = plain;
      ids.dispose();
    }
  });

  it('no tensors leak and gradients flow (restore)', () => {
    const ids = tokens([5, 8]);
    const before = tf.memory().numTensors;
    const h = applyTokenReduction(t, { prune: [{ layer: 1, keep: 0.5 }], merge: [{ layer: 3, merge: 2 }] });
    try {
      const emb = t.namedParams().find(([n]) => n === 'embedding_layer.weight')![1].variable;
      const { value, grads } = tf.variableGrads(() => t.forward(ids).square().sum() as tf.Scalar, [emb]);
      expect(tf.tidy(() => grads[emb.name].abs().sum().dataSync()[0])).toBeGreaterThan(0);
      tf.dispose([value, grads[emb.name]]);
    } finally {
      h.remove();
      ids.dispose();
    }
    expect(tf.memory().numTensors).toBe(before - 1); // ids
  });
});
