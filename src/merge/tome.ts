import * as tf from '../base/tf.js';
import { MclipError } from '../errors.js';
import type { HookHandle } from '../base/nn/module.js';
import type { ForwardContext } from '../base/nn/context.js';
import { TransformerEncoder } from '../base/layers/transformer-encoder.js';
import type { TextTransformer } from '../base/model/text-transformer.js';
import { TEXT_TOKENS } from '../base/model/text-context.js';
import { hostState, reduceTokens } from '../prune/token-reduction.js';
import { hookGroup } from '../prune/hook-group.js';
import { proportionalAttention } from './proportional-attention.js';
import { LAYER_KEYS, recordLayerKeys } from './layer-keys.js';

/** One merging reducer: a transformer layer (index in `tower.transformer`) and how many tokens it merges away per row. */
export interface MergeLayer {
  layer: number;
  merge: number;
}

export interface TokenMergeOptions {
  layers: readonly MergeLayer[];
}

/** What a token is for matching (the `kinds` of `bipartiteGroups`): 0 = protected (never merged), 1 = content, 2 = pad (pads merge only with pads). */
export type MatchKind = 0 | 1 | 2;

/**
 * ToMe bipartite soft matching of one row (methods.md §4.2 / §4.5): `sim` [N·N] cosine similarities of the
 * tokens' metrics; set A = even indices, set B = odd; a pair is allowed when neither token is protected and
 * both are content or both pads; each A token picks its most similar B token, and the `r` A tokens with the
 * highest best similarity merge into their partners. Returns the new tokens as groups of current indices,
 * ordered by their largest index (original order), or null when the row has fewer than `r` allowed pairs.
 */
/** How many tokens of one row can merge: the A tokens (even indices, not protected) with an allowed B partner. */
export function mergeablePairs(kinds: ArrayLike<number>, n: number): number {
  const bKinds = new Set<number>();
  for (let b = 1; b < n; b += 2) if (kinds[b] !== 0) bKinds.add(kinds[b]);
  let count = 0;
  for (let a = 0; a < n; a += 2) if (kinds[a] !== 0 && bKinds.has(kinds[a])) count++;
  return count;
}

export function bipartiteGroups(sim: ArrayLike<number>, kinds: ArrayLike<number>, n: number, r: number): number[][] | null {
  const best: Array<{ a: number; b: number; m: number }> = [];
  for (let a = 0; a < n; a += 2) {
    if (kinds[a] === 0) continue;
    let bb = -1;
    let m = -Infinity;
    for (let b = 1; b < n; b += 2) {
      if (kinds[b] === 0 || kinds[b] !== kinds[a]) continue;
      const v = sim[a * n + b];
      if (bb < 0 || v > m) {
        bb = b;
        m = v;
      }
    }
    if (bb >= 0) best.push({ a, b: bb, m });
  }
  if (best.length < r) return null;
  best.sort((x, y) => y.m - x.m || x.a - y.a);
  const into = new Map<number, number[]>();
  const merged = new Set<number>();
  for (const { a, b } of best.slice(0, r)) {
    merged.add(a);
    into.set(b, [...(into.get(b) ?? [b]), a]);
  }
  const groups: number[][] = [];
  for (let i = 0; i < n; i++) if (!merged.has(i)) groups.push((into.get(i) ?? [i]).sort((x, y) => x - y));
  return groups.sort((x, y) => x[x.length - 1] - y[y.length - 1]);
}

/**
 * ToMe token merging in the text tower (issue 12 item 3; methods.md §4.2, §4.5). At each chosen transformer
 * layer, after the attention residual and before the FFN (its `after_attention` site), every row merges
 * `merge` tokens away by bipartite soft matching on that layer's keys (mean over heads, cosine). The start
 * token (original position 0), the current end-of-text token and slots of size 0 are protected (their rows
 * and columns of the similarity are −∞); a pad never merges with a content token. A merged token is the
 * size-weighted mean of its sources and carries their summed size; later layers use proportional attention
 * (softmax(l + ln s), the `attn_probs` hook of `proportional-attention.ts`), so it counts as s tokens.
 *
 * Order: unlike ToMe's [unmerged A, B] layout, the new tokens are sorted by their largest source position,
 * so the sequence stays in original order and a causal mask keeps allowed(q, k) ⇔ origPos(k) ≤ origPos(q).
 * Each row is matched on its own, so a caption gives the same output in any batch of the same sequence
 * length — unless the batch caps the count: every row merges the same number of tokens (batches stay
 * rectangular), at most what its row with the fewest allowed pairs can merge (a short caption beside pads
 * has few content pairs), as ToMe caps r at half the tokens. When the cap binds, a caption in a batch merges
 * fewer tokens than the same caption alone would. Only
 * transformer layers merge; `mct` needs `convBlockPolicy`. A merge count of 0 installs nothing.
 */
export function tokenMerging(tower: TextTransformer, opts: TokenMergeOptions): HookHandle {
  const layers = tower.transformer.modules();
  if (new Set(opts.layers.map((l) => l.layer)).size !== opts.layers.length) throw new MclipError('token merging: a layer is listed twice');
  const plan: Array<{ merge: number; enc: TransformerEncoder }> = [];
  for (const l of opts.layers) {
    if (!Number.isInteger(l.merge) || l.merge < 0) throw new MclipError(`merge count must be a non-negative integer, got ${l.merge} for layer ${l.layer}`);
    const m = layers[l.layer];
    if (!(m instanceof TransformerEncoder)) throw new MclipError(`token merging acts in transformer layers only; text layer ${l.layer} is ${m ? `a ${m.constructor.name}` : 'missing'}`);
    if (l.merge > 0) plan.push({ merge: l.merge, enc: m });
  }
  if (plan.length === 0) return { remove: () => {} };
  const handles: HookHandle[] = [proportionalAttention(tower.attentionModules())];
  for (const { merge: r, enc } of plan) {
    handles.push(recordLayerKeys(enc.attn));
    handles.push(enc.get('after_attention').registerForwardHook((_m, _x, y, ctx) => (ctx ? merge(y, ctx, r) : undefined)));
  }
  return hookGroup(handles);
}

function merge(y: tf.Tensor, ctx: ForwardContext, r: number): tf.Tensor | undefined {
  const state = ctx.get(TEXT_TOKENS);
  const keys = ctx.get(LAYER_KEYS);
  if (!state || !keys) return undefined;
  const [b, n] = y.shape as [number, number];
  const host = hostState(state, b, n);
  const kinds = new Uint8Array(b * n);
  for (let row = 0; row < b; row++) {
    const eotPos = host.positions[row * n + host.eot[row]];
    for (let i = 0; i < n; i++) {
      const at = row * n + i;
      const prot = i === host.eot[row] || host.positions[at] === 0 || host.sizes[at] <= 0;
      kinds[at] = prot ? 0 : host.positions[at] > eotPos ? 2 : 1;
    }
  }
  let rEff = r;
  for (let row = 0; row < b; row++) rEff = Math.min(rEff, mergeablePairs(kinds.subarray(row * n, (row + 1) * n), n));
  if (rEff <= 0) return undefined;
  const sim = tf.tidy(() => {
    const m = keys.div(keys.norm('euclidean', -1, true).add(1e-12));
    return tf.matMul(m, m, false, true).dataSync();
  });
  const groups: number[][][] = [];
  for (let row = 0; row < b; row++) {
    const g = bipartiteGroups(sim.subarray(row * n * n, (row + 1) * n * n), kinds.subarray(row * n, (row + 1) * n), n, rEff);
    if (!g) throw new Error(`token merging: row ${row} has fewer than ${rEff} allowed pairs (content with content, pads with pads)`);
    groups.push(g);
  }
  return reduceTokens(y, ctx, { k: n - rEff, groups });
}
