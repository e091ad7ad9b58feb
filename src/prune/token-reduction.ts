import * as tf from '../base/tf.js';
import { ContextKey, type ForwardContext } from '../base/nn/context.js';
import { TEXT_TOKENS, type TextTokenState } from '../base/model/text-context.js';
import { LAYER_KEYS } from '../merge/layer-keys.js';
import { recordReduction } from './token-grid.js';

/**
 * A physical reduction of the text tower's current tokens [B, N, C] to K tokens per row (the same K in every
 * row, so batches stay rectangular): `groups[b][k]` lists the current indices that new token k stands for —
 * one index for a kept token (pruning), several for a merged one (ToMe). Groups are ordered by their largest
 * original position, so the sequence stays in original order (a causal mask on the new indices is then
 * allowed(q, k) ⇔ origPos(k) ≤ origPos(q), with origPos of a merged token the largest of its sources,
 * methods.md §4.5 "Tracking").
 */
export interface TokenGroups {
  k: number;
  groups: number[][][];
}

/**
 * Importance scores accumulated over pruning reducers ([B, N] float32, one per current token; owned by the
 * pass). Carried through every reduction: a merged token's score is the sum of its sources'.
 */
export const ACCUMULATED_SCORES = new ContextKey<tf.Tensor2D>('accumulated token scores', (t) => [t]);

/** The text state's per-token arrays on the host: original positions, sizes (1 while null) and EOT indices. */
export function hostState(state: TextTokenState, b: number, n: number): { positions: Int32Array; sizes: Float32Array; eot: Int32Array } {
  const positions = state.positions ? Int32Array.from(state.positions.dataSync()) : Int32Array.from({ length: b * n }, (_, i) => i % n);
  const sizes = state.sizes ? Float32Array.from(state.sizes.dataSync()) : new Float32Array(b * n).fill(1);
  if (positions.length !== b * n || sizes.length !== b * n) throw new Error(`text state describes ${positions.length / b} tokens per row, the sequence has ${n}`);
  return { positions, sizes, eot: Int32Array.from(state.eot.dataSync()) };
}

/**
 * Applies `red` to hidden states x [B, N, C]: a kept token's state is copied (a gather: the real speed-up),
 * a merged token's is the size-weighted mean of its sources, x = Σ s_i x_i / Σ s_i (ToMe). Updates the text
 * state in `ctx` (positions: largest source position; sizes: summed, null while every token is a single
 * one; EOT: the index of the group that holds it), the accumulated scores, the layer's keys (`LAYER_KEYS`,
 * reduced like x) and the grid record of `token-grid.ts`. Gradients flow through every source of a kept or merged token.
 */
export function reduceTokens(x: tf.Tensor, ctx: ForwardContext, red: TokenGroups): tf.Tensor {
  const state = ctx.require(TEXT_TOKENS);
  const [b, n] = x.shape as [number, number, number];
  const { k, groups } = red;
  if (groups.length !== b || groups.some((g) => g.length !== k)) throw new Error(`token reduction: expected ${b} rows of ${k} groups`);
  const host = hostState(state, b, n);
  const single = groups.every((row) => row.every((g) => g.length === 1));
  const positions = new Int32Array(b * k);
  const sizes = new Float32Array(b * k);
  const eot = new Int32Array(b);
  const newIndex = new Int32Array(b * n).fill(-1);
  const weights = single ? null : new Float32Array(b * k * n);
  const rows = new Int32Array(b * k);
  for (let r = 0; r < b; r++) {
    let found = -1;
    groups[r].forEach((g, j) => {
      let pos = -1;
      let size = 0;
      for (const i of g) {
        if (i < 0 || i >= n || newIndex[r * n + i] >= 0) throw new Error(`token reduction: row ${r} uses token ${i} twice or out of range`);
        newIndex[r * n + i] = j;
        pos = Math.max(pos, host.positions[r * n + i]);
        size += host.sizes[r * n + i];
        if (i === host.eot[r]) found = j;
      }
      if (j > 0 && pos < positions[r * k + j - 1]) throw new Error(`token reduction: row ${r}'s groups are not in original order`);
      positions[r * k + j] = pos;
      sizes[r * k + j] = size;
      rows[r * k + j] = r * n + g[0];
      if (weights) for (const i of g) weights[(r * k + j) * n + i] = size > 0 ? host.sizes[r * n + i] / size : 1 / g.length;
    });
    if (found < 0) throw new Error(`token reduction: row ${r} drops its end-of-text token`);
    eot[r] = found;
  }
  const acc = ctx.get(ACCUMULATED_SCORES);
  if (acc) {
    const a = acc.dataSync();
    const next = new Float32Array(b * k);
    for (let r = 0; r < b; r++) groups[r].forEach((g, j) => g.forEach((i) => (next[r * k + j] += a[r * n + i])));
    ctx.set(ACCUMULATED_SCORES, tf.tensor2d(next, [b, k]));
  }
  recordReduction(ctx, x, newIndex);
  const sized = state.sizes !== null || !single;
  const apply = (t: tf.Tensor) =>
    tf.tidy(() => {
      const d = t.shape[2] as number;
      return weights ? tf.matMul(tf.tensor3d(weights, [b, k, n]), t as tf.Tensor3D) : tf.gather(t.reshape([b * n, d]), tf.tensor1d(rows, 'int32')).reshape([b, k, d]);
    });
  // This layer's keys follow the tokens, so a merge after a prune in the same layer matches the kept ones.
  const keys = ctx.get(LAYER_KEYS);
  if (keys && keys.shape[0] === b && keys.shape[1] === n) ctx.set(LAYER_KEYS, apply(keys) as tf.Tensor3D);
  ctx.set(TEXT_TOKENS, {
    ...state,
    eot: tf.tensor1d(eot, 'int32'),
    positions: tf.tensor2d(positions, [b, k], 'int32'),
    sizes: sized ? tf.tensor2d(sizes, [b, k]) : null,
  });
  return apply(x);
}
