import * as tf from '../base/tf.js';
import { ContextKey } from '../base/nn/context.js';
import type { HookHandle } from '../base/nn/module.js';
import type { MultiHeadAttention } from '../base/layers/multi-head-attention.js';

/** The keys of the latest hooked attention layer, averaged over heads: [B, N, d_h] (ToMe's merge metric). */
export const LAYER_KEYS = new ContextKey<tf.Tensor3D>('layer keys', (t) => [t]);

/**
 * Records the keys of `attn` averaged over heads under `LAYER_KEYS`, read off the output of its `qkv_proj`
 * ([B, N, 3·heads·d], laid out [3, heads, d]), for a merge later in the same layer. Changes nothing.
 */
export function recordLayerKeys(attn: MultiHeadAttention): HookHandle {
  const heads = attn.numHeads;
  return attn.get('qkv_proj').registerForwardHook((_m, _x, qkv, ctx) => {
    if (!ctx) return;
    const [b, n, c3] = qkv.shape as [number, number, number];
    const d = c3 / 3 / heads;
    // The k columns as a 2-D slice of whole row segments: the wasm Slice of the 5-D view [B, N, 3, heads, d]
    // took ~0.6 s at B = 80 (more than the rest of the tower), the 2-D one is a copy per row.
    const h = heads * d;
    ctx.set(LAYER_KEYS, tf.tidy(() => qkv.reshape([b * n, c3]).slice([0, h], [-1, h]).reshape([b, n, heads, d]).mean(2) as tf.Tensor3D));
  });
}
