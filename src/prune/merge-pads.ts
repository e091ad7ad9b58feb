import * as tf from '../base/tf.js';
import type { HookHandle, Module } from '../base/nn/module.js';
import { ContextKey, type ForwardContext } from '../base/nn/context.js';
import { RepMixerBlock } from '../base/layers/repmixer-block.js';
import type { TextTransformer } from '../base/model/text-transformer.js';
import { TEXT_TOKENS, type TextTokenState } from '../base/model/text-context.js';
import { proportionalAttention } from '../merge/proportional-attention.js';
import { hookGroup } from './hook-group.js';

/** Set in the forward context while the pads are merged (so restoring undoes only this policy's merge). */
const PADS_MERGED = new ContextKey<boolean>('pads merged');

/**
 * The pad-merged layout of a batch with end-of-text indices `eot` over `s` slots: N = min(s, max eot + 2)
 * tokens per row — row b keeps its content 0…eot_b, then one token standing for its s−1−eot_b pads, then
 * dead slots of size 0 that only keep the batch rectangular (proportional attention gives them weight 0).
 * `weights` [B, N, S] maps the full grid to it (the merged pad is the mean of the pad states; dead rows are
 * 0); `sizes` [B, N]; `positions` [B, N] (the merged pad and dead slots carry the last position, s−1, the
 * largest source position as methods.md §4.5 asks of a merged token).
 */
export function padMergeLayout(eot: ArrayLike<number>, s: number): { n: number; weights: Float32Array; sizes: Float32Array; positions: Int32Array } {
  const b = eot.length;
  let longest = 0;
  for (let i = 0; i < b; i++) longest = Math.max(longest, eot[i] + 1);
  const n = Math.min(s, longest + 1);
  const weights = new Float32Array(b * n * s);
  const sizes = new Float32Array(b * n);
  const positions = new Int32Array(b * n).fill(s - 1);
  for (let r = 0; r < b; r++) {
    const e = eot[r];
    for (let i = 0; i <= e; i++) {
      weights[(r * n + i) * s + i] = 1;
      sizes[r * n + i] = 1;
      positions[r * n + i] = i;
    }
    const pads = s - 1 - e;
    if (pads > 0) {
      for (let j = e + 1; j < s; j++) weights[(r * n + e + 1) * s + j] = 1 / pads;
      sizes[r * n + e + 1] = pads;
    }
  }
  return { n, weights, sizes, positions };
}

/** Flat rows b·N + src that scatter the merged layout back onto the s-slot grid (every pad slot gets the merged pad's state). */
function restoreRows(eot: ArrayLike<number>, n: number, s: number): Int32Array {
  const rows = new Int32Array(eot.length * s);
  for (let r = 0; r < eot.length; r++) for (let j = 0; j < s; j++) rows[r * s + j] = r * n + Math.min(j, eot[r] + 1);
  return rows;
}

/**
 * The `merge-pads` padding policy (methods.md §4.5 P3): in the transformer layers every row's pads are one
 * token of size n_pad (their mean state) under proportional attention (`+ln s` on the softmax logits).
 *
 * Where: at the input of each run of transformer layers (a pre-forward hook on its first layer) — for a
 * `base` tower right after the embeddings, for `mct` after the first RepMixer block, whose convolution needs
 * the evenly spaced grid. Before a RepMixer block that follows a run, the grid is restored (a forward hook
 * on the run's last layer): content rows go back to their slots and every pad slot gets the merged pad's
 * state (ToMe's unmerge). Pooling reads the unchanged EOT index.
 *
 * Exactness: a causal tower's EOT row never sees the pads, so the output equals `as-trained`. A non-causal
 * tower gives the unmerged result exactly when the pad states are identical where they are merged (n equal
 * keys and values count as one of size n, and identical pads stay identical through attention layers);
 * they differ by their positional embedding (and, in `mct`, by the first block's convolution context), so
 * on a trained S0–S2 tower it is an approximation. Batches are exact: a caption gives the same output in
 * any batch, since the dead slots that square the batch have weight 0.
 */
export function mergePadsPadding(tower: TextTransformer): HookHandle {
  const handles: HookHandle[] = [proportionalAttention(tower.attentionModules())];
  const layers = tower.transformer.modules();
  const isGrid = (m: Module) => m instanceof RepMixerBlock;
  layers.forEach((m, i) => {
    if (isGrid(m)) return;
    if (i === 0 || isGrid(layers[i - 1])) handles.push(m.registerForwardPreHook((_m, x, ctx) => mergePads(x, ctx)));
    if (i + 1 < layers.length && isGrid(layers[i + 1])) handles.push(m.registerForwardHook((_m, _x, y, ctx) => restorePads(y, ctx)));
  });
  return hookGroup(handles);
}

function mergePads(x: tf.Tensor, ctx: ForwardContext | undefined): tf.Tensor | void {
  const state = ctx?.get(TEXT_TOKENS);
  if (!ctx || !state) return;
  const [b, s] = x.shape;
  if (state.positions !== null || state.sizes !== null || s !== state.tokens.shape[1]) throw new Error('merge-pads: expected the full token grid at the first transformer layer');
  const eot = state.eot.dataSync();
  const lay = padMergeLayout(eot, s);
  if (lay.n === s && lay.sizes.every((v) => v === 1)) return; // no row has pads
  // The context owns the new positions and sizes until the pass ends.
  const next: TextTokenState = { ...state, positions: tf.tensor2d(lay.positions, [b, lay.n], 'int32'), sizes: tf.tensor2d(lay.sizes, [b, lay.n]) };
  ctx.set(TEXT_TOKENS, next);
  ctx.set(PADS_MERGED, true);
  return tf.tidy(() => tf.matMul(tf.tensor3d(lay.weights, [b, lay.n, s]), x as tf.Tensor3D));
}

function restorePads(y: tf.Tensor, ctx: ForwardContext | undefined): tf.Tensor | void {
  const state = ctx?.get(TEXT_TOKENS);
  if (!ctx || !state || ctx.get(PADS_MERGED) !== true) return;
  const [b, n, c] = y.shape;
  const s = state.tokens.shape[1];
  const rows = restoreRows(state.eot.dataSync(), n, s);
  ctx.set(TEXT_TOKENS, { ...state, positions: null, sizes: null });
  ctx.set(PADS_MERGED, false);
  return tf.tidy(() => tf.gather(y.reshape([b * n, c]), tf.tensor1d(rows, 'int32')).reshape([b, s, c]));
}
