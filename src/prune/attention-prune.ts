import * as tf from '../base/tf.js';
import { MclipError } from '../errors.js';
import type { HookHandle } from '../base/nn/module.js';
import type { ForwardContext } from '../base/nn/context.js';
import { TransformerEncoder } from '../base/layers/transformer-encoder.js';
import type { TextTransformer } from '../base/model/text-transformer.js';
import { TEXT_TOKENS } from '../base/model/text-context.js';
import { proportionalAttention } from '../merge/proportional-attention.js';
import { EOT_ATTENTION, recordEotAttention } from './eot-attention.js';
import { ACCUMULATED_SCORES, hostState, reduceTokens } from './token-reduction.js';
import { padsFirstScores } from './pad-tokens.js';
import { hookGroup } from './hook-group.js';

/** One pruning reducer: a transformer layer (index in `tower.transformer`) and the fraction of its current tokens it keeps, in (0, 1]. */
export interface PruneLayer {
  layer: number;
  keep: number;
}

export interface AttentionPruneOptions {
  layers: readonly PruneLayer[];
  /** Rank by the EOT attention summed over this and the earlier reducers (default false: this layer's only). */
  accumulate?: boolean;
  /**
   * `gather` (default): the dropped tokens leave the sequence (the real speed-up). `mask`: they stay, with
   * size 0 — under proportional attention that is a −∞ logit for them as keys in every later layer
   * (softmax(l + ln 0)), the same numerics as `gather` for the kept tokens and no speed-up; it exists to
   * check the gather implementation.
   */
  implementation?: 'gather' | 'mask';
  /** The `pads-first` padding policy (methods.md §4.5 P2): pads are dropped before any content token. */
  padsFirst?: boolean;
}

/** Tokens a reducer keeps out of `n`: round(keep · n), never fewer than the start and end tokens, at most n. */
export function keptCount(n: number, keep: number): number {
  if (n <= 2) return n;
  return Math.min(n, Math.max(2, Math.round(keep * n)));
}

/**
 * The `k` tokens each row keeps, ascending: protected tokens first, then the highest scores (ties: the lower
 * index), among the live tokens. `scores`, `protect` and `live` are [B·N] row-major.
 */
export function selectKept(scores: ArrayLike<number>, protect: Uint8Array, live: Uint8Array, b: number, n: number, k: number): number[][] {
  const out: number[][] = [];
  for (let r = 0; r < b; r++) {
    const cand: number[] = [];
    for (let i = 0; i < n; i++) if (live[r * n + i]) cand.push(i);
    if (cand.length < k) throw new Error(`attention pruning: row ${r} has ${cand.length} live tokens, fewer than the ${k} to keep`);
    const key = (i: number) => (protect[r * n + i] ? Infinity : scores[r * n + i]);
    cand.sort((x, y) => key(y) - key(x) || x - y);
    const kept = cand.slice(0, k);
    for (let i = 0; i < n; i++) if (protect[r * n + i] && !kept.includes(i)) throw new Error(`attention pruning: row ${r} cannot keep its start and end tokens in ${k} tokens`);
    out.push(kept.sort((x, y) => x - y));
  }
  return out;
}

/**
 * Attention-informed token pruning of the text tower (issue 12 item 2; PuMer's text-informed pruning adapted
 * to a dual encoder, methods.md §4.1 and §4.5). At each chosen transformer layer, after the attention
 * residual and before the FFN (the layer's `after_attention` site), every row keeps the round(keep · N)
 * tokens the current end-of-text token attends to most (mean over heads; optionally accumulated over the
 * reducers), never dropping the start token (original position 0) or the end-of-text token; the others are
 * removed. The kept tokens stay in original order and the text state records their positions and the new
 * EOT index, so pooling reads the EOT row and a causal mask stays right.
 *
 * Every row keeps the same count (the batch stays rectangular) and each row's choice depends on its own
 * scores only, so a caption gives the same output in any batch of the same sequence length. Parameter-free:
 * works on a trained tower and while fine-tuning (gradients flow through the kept tokens). Only transformer
 * layers reduce; in `mct` the last RepMixer block needs `convBlockPolicy` (restore or compact). A keep ratio
 * of 1 installs nothing (bit-identical).
 */
export function attentionPruning(tower: TextTransformer, opts: AttentionPruneOptions): HookHandle {
  const layers = tower.transformer.modules();
  if (new Set(opts.layers.map((l) => l.layer)).size !== opts.layers.length) throw new MclipError('token pruning: a layer is listed twice');
  const plan: Array<{ keep: number; enc: TransformerEncoder }> = [];
  for (const l of opts.layers) {
    if (!(l.keep > 0 && l.keep <= 1)) throw new MclipError(`keep ratio must lie in (0, 1], got ${l.keep} for layer ${l.layer}`);
    const m = layers[l.layer];
    if (!(m instanceof TransformerEncoder)) throw new MclipError(`token pruning acts in transformer layers only; text layer ${l.layer} is ${m ? `a ${m.constructor.name}` : 'missing'}`);
    if (l.keep < 1) plan.push({ keep: l.keep, enc: m });
  }
  if (plan.length === 0) return { remove: () => {} };
  const handles: HookHandle[] = [proportionalAttention(tower.attentionModules())];
  for (const { keep, enc } of plan) {
    handles.push(recordEotAttention(enc.attn));
    handles.push(enc.get('after_attention').registerForwardHook((_m, _x, y, ctx) => (ctx ? prune(y, ctx, keep, opts) : undefined)));
  }
  return hookGroup(handles);
}

function prune(y: tf.Tensor, ctx: ForwardContext, keep: number, opts: AttentionPruneOptions): tf.Tensor | undefined {
  const state = ctx.get(TEXT_TOKENS);
  const score = ctx.get(EOT_ATTENTION);
  if (!state || !score) return undefined;
  const [b, n] = y.shape as [number, number];
  const mask = opts.implementation === 'mask';
  const host = hostState(state, b, n);
  // Live tokens: in the mask implementation the ones not yet dropped (size > 0); in the gather one, every
  // current token (slots of size 0, e.g. merge-pads' dead slots, rank last).
  const live = Uint8Array.from(host.sizes, (s) => (!mask || s > 0 ? 1 : 0));
  let nLive = -1;
  for (let r = 0; r < b; r++) {
    let c = 0;
    for (let i = 0; i < n; i++) c += live[r * n + i];
    if (nLive >= 0 && c !== nLive) throw new Error('attention pruning (mask): rows have different numbers of live tokens');
    nLive = c;
  }
  const k = keptCount(nLive, keep);
  let ranked: tf.Tensor2D = score;
  if (opts.accumulate) {
    const prev = ctx.get(ACCUMULATED_SCORES);
    ranked = prev ? tf.tidy(() => prev.add(score) as tf.Tensor2D) : score;
    ctx.set(ACCUMULATED_SCORES, ranked);
  }
  if (k === nLive) return undefined;
  const data = tf.tidy(() => {
    let s = opts.padsFirst ? padsFirstScores(ranked, state) : ranked;
    if (!mask && state.sizes) s = tf.where(state.sizes.greater(0), s, tf.fill(s.shape, -Infinity)) as tf.Tensor2D;
    return s.dataSync();
  });
  const protect = new Uint8Array(b * n);
  for (let r = 0; r < b; r++) {
    protect[r * n + host.eot[r]] = 1;
    for (let i = 0; i < n; i++) if (host.positions[r * n + i] === 0) protect[r * n + i] = 1;
  }
  const kept = selectKept(data, protect, live, b, n, k);
  if (!mask) return reduceTokens(y, ctx, { k, groups: kept.map((row) => row.map((i) => [i])) });
  const sizes = new Float32Array(b * n);
  kept.forEach((row, r) => row.forEach((i) => (sizes[r * n + i] = host.sizes[r * n + i])));
  ctx.set(TEXT_TOKENS, { ...state, sizes: tf.tensor2d(sizes, [b, n]) });
  return undefined;
}
