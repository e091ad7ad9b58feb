import * as tf from '../base/tf.js';
import { MclipError } from '../errors.js';
import type { HookHandle } from '../base/nn/module.js';
import type { TextTransformer } from '../base/model/text-transformer.js';
import { TEXT_TOKENS } from '../base/model/text-context.js';
import { truncatedLength } from '../export/text-padding.js';

/** The rule is shared with the ONNX side (a `truncate` export is fed rows cut by it: `truncateTokenRows`). */
export { truncatedLength };

/**
 * The `truncate` padding policy (methods.md §4.5 P1): each batch is cut to its longest real sequence
 * (up to and including the end-of-text token) plus `spare` pads, right after the token and positional
 * embeddings — so the kept positions get the rows P[0:L] of the learned table, not the bilinear
 * resampling the tower applies to an input of another length. A forward hook on `positional_embedding`
 * slices the hidden states and records the kept positions 0…L−1 in the text state; pooling reads the
 * (unchanged) EOT index.
 *
 * Exact for causal towers (`mobileclip_tiny_base`, MobileCLIP-B): nothing after EOT reaches the EOT row.
 * Approximate for the non-causal `mct` / S0–S2 towers, which were trained with the pads as live tokens
 * (attended to, and mixed in by the RepMixer convolutions); there the result also depends on the longest
 * caption of the batch, since a short caption keeps that many pads.
 *
 * The ONNX form is an export option (`exportOnnx(model, path, { textPadding: 'truncate' })`, `mclip export
 * --text-padding truncate`): tokens [batch, seq], fed the rows `truncateTokenRows` cuts (src/export/text-padding.ts).
 */
export function truncatePadding(tower: TextTransformer, opts: { spare?: number } = {}): HookHandle {
  const spare = opts.spare ?? 0;
  if (!Number.isInteger(spare) || spare < 0) throw new MclipError(`spare pads must be a non-negative integer, got ${spare}`);
  return tower.positionalEmbedding.registerForwardHook((_m, _x, y, ctx) => {
    const state = ctx?.get(TEXT_TOKENS);
    if (!ctx || !state) return; // embedding outside a tower pass: nothing to cut
    if (state.positions !== null) throw new Error('truncate: the text state is already reduced at the embedding');
    const [b, s] = y.shape;
    const l = truncatedLength(state.eot.dataSync(), s, spare);
    if (l === s) return;
    // The context owns the positions until the pass ends.
    ctx.set(TEXT_TOKENS, { ...state, positions: tf.tile(tf.range(0, l, 1, 'int32').expandDims(0), [b, 1]) as tf.Tensor2D });
    return y.slice([0, 0, 0], [-1, l, -1]);
  });
}
