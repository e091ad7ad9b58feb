import * as tf from '../tf.js';
import { ContextKey, ForwardContext } from '../nn/context.js';

/**
 * What travels with the text tower's hidden states [B, N, C] through its layers (in the forward
 * context under `TEXT_TOKENS`). A layer that drops or merges tokens (token pruning, ToMe) replaces
 * the state with one that describes the tokens it kept; pooling reads `eot` from it.
 */
export interface TextTokenState {
  /** The input token ids [B, S] (int32), unchanged through the tower. */
  tokens: tf.Tensor2D;
  /** Index of the end-of-text token in the current sequence, per sample: [B] int32. */
  eot: tf.Tensor1D;
  /** Original position of each current token [B, N] int32; null while nothing was removed (positions 0…S−1). */
  positions: tf.Tensor2D | null;
  /** How many original tokens each current token stands for [B, N] float32; null while all are 1. */
  sizes: tf.Tensor2D | null;
}

/**
 * The text state's key. The context owns `eot`, `positions` and `sizes` of every state set under it (kept
 * beyond the tidy of the module whose hook made them, freed when the pass ends); `tokens` stays the caller's.
 */
export const TEXT_TOKENS = new ContextKey<TextTokenState>('text tokens', (s) => [s.eot, s.positions, s.sizes]);

/** EOT index of each row: the first arg-max of the ids (EOT is the largest id), [B] int32. */
export function eotIndex(tokens: tf.Tensor): tf.Tensor1D {
  return tf.tidy(() => tf.argMax(tokens.toInt(), 1).toInt() as tf.Tensor1D);
}

/** A context holding the initial text state of `tokens` (nothing reduced yet); the context owns its `eot`. */
export function textContext(tokens: tf.Tensor2D, ctx: ForwardContext = new ForwardContext()): ForwardContext {
  ctx.set(TEXT_TOKENS, { tokens, eot: eotIndex(tokens), positions: null, sizes: null });
  return ctx;
}

/** Flat row indices b·N + eot[b] of the EOT rows of hidden states [B, N, C]. */
export function eotFlatRows(state: TextTokenState, n: number): tf.Tensor1D {
  return tf.tidy(() => {
    const b = state.eot.shape[0];
    return state.eot.add(tf.range(0, b * n, n, 'int32')) as tf.Tensor1D;
  });
}
