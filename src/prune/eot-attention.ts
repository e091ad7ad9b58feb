import * as tf from '../base/tf.js';
import { ContextKey } from '../base/nn/context.js';
import type { HookHandle } from '../base/nn/module.js';
import type { MultiHeadAttention } from '../base/layers/multi-head-attention.js';
import { TEXT_TOKENS, eotFlatRows } from '../base/model/text-context.js';

/** The attention the current end-of-text token paid every token in the latest hooked layer, mean over heads: [B, N]. */
export const EOT_ATTENTION = new ContextKey<tf.Tensor2D>('end-of-text attention', (t) => [t]);

/**
 * Records, at the `attn_probs` site of `attn`, the end-of-text row of its attention weights [B, heads, N, N]
 * averaged over heads (PuMer's `mh` score with the EOT as the text side's CLS, methods.md §4.5) under
 * `EOT_ATTENTION`, for a reducer later in the same layer. Reads the weights as the kernel uses them (after
 * proportional attention when that hook was registered first). Changes nothing.
 */
export function recordEotAttention(attn: MultiHeadAttention): HookHandle {
  return attn.get('attn_probs').registerForwardHook((_m, _x, p, ctx) => {
    const state = ctx?.get(TEXT_TOKENS);
    if (!ctx || !state) return;
    const [b, , n] = p.shape as [number, number, number, number];
    ctx.set(
      EOT_ATTENTION,
      tf.tidy(() => tf.gather(p.mean(1).reshape([b * n, n]), eotFlatRows(state, n)) as tf.Tensor2D),
    );
  });
}
