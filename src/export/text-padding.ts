/**
 * The text padding policy an ONNX text graph carries (methods.md §4.5), and the token rows one feeds it.
 *
 * - `as-trained` (default): `tokens` is [batch, S], S the context length, every slot runs (as officially).
 * - `truncate`: `tokens` is [batch, seq] with seq ≤ S, a batch cut to its longest real sequence (SOT … EOT)
 *   plus optional spare pads. The graph slices the positional table to P[0:seq] and the causal mask to
 *   seq × seq, and pools at each row's first arg-max, so a row of length seq gets what the tfjs tower gives
 *   under the `truncate` policy (`src/prune/truncate.ts`: the hidden states cut right after the embeddings).
 *   Exact for causal towers (equal to the full S-slot output); approximate for the non-causal `mct` / S0–S2
 *   towers, where the result depends on the batch's longest row. The policy is recorded in the model's
 *   metadata as `mclip.text_padding` (absent: `as-trained`), so a consumer knows it may feed shorter rows.
 */
import { MclipError } from '../errors.js';

export const EXPORT_TEXT_PADDINGS = ['as-trained', 'truncate'] as const;
export type ExportTextPadding = (typeof EXPORT_TEXT_PADDINGS)[number];

/** The metadata key of the policy. */
export const TEXT_PADDING_KEY = 'mclip.text_padding';

export function isExportTextPadding(s: string): s is ExportTextPadding {
  return (EXPORT_TEXT_PADDINGS as readonly string[]).includes(s);
}

/** The policy of an exported model from its metadata (`decodeModel(bytes).metadataProps`); `as-trained` when unrecorded. */
export function textPaddingOf(metadata: ReadonlyArray<{ key: string; value: string }> | undefined): ExportTextPadding {
  const v = (metadata ?? []).find((e) => e.key === TEXT_PADDING_KEY)?.value;
  if (v === undefined) return 'as-trained';
  if (!isExportTextPadding(v)) throw new MclipError(`the model's ${TEXT_PADDING_KEY} is '${v}' (known: ${EXPORT_TEXT_PADDINGS.join(', ')})`);
  return v;
}

/** Length a batch is cut to: its longest real sequence (SOT … EOT) plus `spare` pads, at most `contextLength`. */
export function truncatedLength(eot: ArrayLike<number>, contextLength: number, spare = 0): number {
  let longest = 0;
  for (let i = 0; i < eot.length; i++) longest = Math.max(longest, eot[i] + 1);
  return Math.min(contextLength, longest + spare);
}

/** The end-of-text index of each of `n` rows of width `s`: the first arg-max (EOT is the largest id). */
export function eotIndices(ids: ArrayLike<number>, n: number, s: number): Int32Array {
  if (ids.length !== n * s) throw new MclipError(`expected ${n}×${s} token ids, got ${ids.length}`);
  const out = new Int32Array(n);
  for (let b = 0; b < n; b++) {
    let best = 0;
    for (let j = 1; j < s; j++) if (ids[b * s + j] > ids[b * s + best]) best = j;
    out[b] = best;
  }
  return out;
}

/**
 * Token rows [n, s] cut for a `truncate` graph: every row to the batch's longest real sequence plus
 * `spare` pads (at most s). Returns the rows [n, length] (a copy; `ids` itself when nothing is cut).
 */
export function truncateTokenRows(ids: Int32Array, n: number, s: number, spare = 0): { ids: Int32Array; length: number } {
  if (!Number.isInteger(spare) || spare < 0) throw new MclipError(`spare pads must be a non-negative integer, got ${spare}`);
  const length = truncatedLength(eotIndices(ids, n, s), s, spare);
  if (length === s) return { ids, length };
  const out = new Int32Array(n * length);
  for (let b = 0; b < n; b++) out.set(ids.subarray(b * s, b * s + length), b * length);
  return { ids: out, length };
}
