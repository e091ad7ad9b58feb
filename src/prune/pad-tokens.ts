import * as tf from '../base/tf.js';
import { eotIndex, type TextTokenState } from '../base/model/text-context.js';

/**
 * Which of the current tokens are padding: [B, N] bool. A pad is a token whose original position lies
 * after the row's end-of-text token (the official tokenizer pads with id 0 after EOT). While nothing was
 * removed (`positions` null) the current index is the original position; a merged pad token carries a
 * position after EOT, so it counts as a pad too.
 */
export function padMask(state: TextTokenState, n: number): tf.Tensor2D {
  return tf.tidy(() => {
    const b = state.tokens.shape[0];
    const pos = state.positions ?? (tf.tile(tf.range(0, n, 1, 'int32').expandDims(0), [b, 1]) as tf.Tensor2D);
    if (pos.shape[1] !== n) throw new Error(`padMask: the text state holds ${pos.shape[1]} positions, the sequence ${n}`);
    return pos.greater(eotIndex(state.tokens).expandDims(1)) as tf.Tensor2D;
  });
}

/**
 * The `pads-first` padding policy for a token reducer (methods.md §4.5 P2): importance scores [B, N] with
 * every pad's score set to −∞, so a top-k selection drops pads before any content token.
 */
export function padsFirstScores(scores: tf.Tensor2D, state: TextTokenState): tf.Tensor2D {
  return tf.tidy(() => tf.where(padMask(state, scores.shape[1]), tf.fill(scores.shape, -Infinity), scores) as tf.Tensor2D);
}
