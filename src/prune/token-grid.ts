import * as tf from '../base/tf.js';
import { ContextKey, type ForwardContext } from '../base/nn/context.js';
import { TEXT_TOKENS, type TextTokenState } from '../base/model/text-context.js';

/**
 * The record that lets token reducers be undone (ToMe's `unmerge`, methods.md §4.5 `restore`): for a grid
 * of G slots (the sequence where the record starts), which current token stands for each slot, and the state
 * each removed slot had when its token was removed.
 */
interface GridRecord {
  g: number;
  /** Tokens per row now (after the reductions recorded so far). */
  current: number;
  /** Per row and slot [B·G]: the index of the current token that stands for the slot; −1 once pruned. */
  slotOf: Int32Array;
  /** The state of every slot when it was last reduced [B, G, C] (read for pruned slots); null before any reduction. */
  frozen: tf.Tensor3D | null;
  /** The text state at the start of the record (the state again once restored). */
  base: TextTokenState;
}

const TOKEN_GRID = new ContextKey<GridRecord | null>('token grid', (r) => [r?.frozen ?? null]);

/** Starts recording reductions of the current sequence of `n` tokens per row (the grid a restore returns to). */
export function startGrid(ctx: ForwardContext, b: number, n: number): void {
  const base = ctx.require(TEXT_TOKENS);
  const slotOf = Int32Array.from({ length: b * n }, (_, i) => i % n);
  ctx.set(TOKEN_GRID, { g: n, current: n, slotOf, frozen: null, base });
}

/**
 * Called by `reduceTokens` before it replaces hidden states x [B, N, C]: `newIndex[b·N + i]` is the new
 * index of current token i (−1: pruned). Freezes the current state of every slot and moves the map on.
 * Does nothing while no grid is being recorded.
 */
export function recordReduction(ctx: ForwardContext, x: tf.Tensor, newIndex: Int32Array): void {
  const rec = ctx.get(TOKEN_GRID);
  if (!rec) return;
  const [b, n, c] = x.shape as [number, number, number];
  checkLength(rec, n);
  const { g, slotOf } = rec;
  let kept = 0;
  for (let i = 0; i < n; i++) kept = Math.max(kept, newIndex[i] + 1);
  const rows = new Int32Array(b * g);
  const next = new Int32Array(b * g);
  for (let r = 0; r < b; r++) {
    for (let j = 0; j < g; j++) {
      const cur = slotOf[r * g + j];
      rows[r * g + j] = cur >= 0 ? r * n + cur : b * n + r * g + j;
      next[r * g + j] = cur >= 0 ? newIndex[r * n + cur] : -1;
    }
  }
  const frozen = tf.tidy(() => {
    const flat = x.reshape([b * n, c]);
    const src = rec.frozen ? tf.concat([flat, rec.frozen.reshape([b * g, c])]) : flat;
    return tf.gather(src, tf.tensor1d(rows, 'int32')).reshape([b, g, c]) as tf.Tensor3D;
  });
  ctx.set(TOKEN_GRID, { ...rec, current: kept, slotOf: next, frozen });
}

/**
 * Scatters hidden states y [B, N, C] back onto the recorded grid [B, G, C] — a kept token to its slot, a
 * merged token's state to every slot it stands for, a pruned slot the state it had when removed — restores
 * the text state of the grid's start and ends the record. Returns undefined when nothing was reduced.
 */
export function restoreGrid(ctx: ForwardContext, y: tf.Tensor): tf.Tensor | undefined {
  const rec = ctx.get(TOKEN_GRID);
  if (!rec) return undefined;
  ctx.set(TOKEN_GRID, null);
  if (!rec.frozen) return undefined;
  const [b, n, c] = y.shape as [number, number, number];
  checkLength(rec, n);
  const { g, slotOf, frozen } = rec;
  const rows = new Int32Array(b * g);
  for (let r = 0; r < b; r++) for (let j = 0; j < g; j++) rows[r * g + j] = slotOf[r * g + j] >= 0 ? r * n + slotOf[r * g + j] : b * n + r * g + j;
  ctx.set(TEXT_TOKENS, rec.base);
  return tf.tidy(() => tf.gather(tf.concat([y.reshape([b * n, c]), frozen.reshape([b * g, c])]), tf.tensor1d(rows, 'int32')).reshape([b, g, c]));
}

/** The sequence must change length only through recorded reductions (a hook that merges or cuts tokens on its own, e.g. merge-pads, cannot be combined with a restore). */
function checkLength(rec: GridRecord, n: number): void {
  if (n !== rec.current) throw new Error(`token grid: the sequence has ${n} tokens where the recorded reductions left ${rec.current}; it changed outside the token reducers (merge-pads cannot be combined with the restore policy)`);
}
