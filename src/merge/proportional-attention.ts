import * as tf from '../base/tf.js';
import { MclipError } from '../errors.js';
import type { HookHandle } from '../base/nn/module.js';
import { softmaxKernel } from '../base/nn/attention.js';
import type { MultiHeadAttention } from '../base/layers/multi-head-attention.js';
import { TEXT_TOKENS } from '../base/model/text-context.js';

/**
 * Proportional attention (ToMe; methods.md §4.2): a token that stands for s original tokens counts as s
 * copies of one key, softmax(q·kᵀ/√d + ln s). The core's attention does not read token sizes, so this
 * plug-in applies it at the `attn_probs` hook site with the identity
 *
 *   softmax(l + ln s)_j = e^{l_j}·s_j / Σ_k e^{l_k}·s_k = P_j·s_j / Σ_k P_k·s_k      (P = softmax(l)),
 *
 * i.e. the weights are re-weighted by size and renormalised per query row. A size of 0 (a dead slot that
 * only keeps a batch rectangular) gets weight exactly 0, as ln 0 = −∞ would. With n identical keys and
 * values merged into one of size n the result equals the unmerged attention exactly (up to rounding).
 * Softmax only: the sigmoid kernel needs × s without the renormalisation, so another kernel is refused.
 */
export function proportionalProbs(probs: tf.Tensor4D, sizes: tf.Tensor2D): tf.Tensor4D {
  return tf.tidy(() => {
    const [b, , , n] = probs.shape;
    if (sizes.shape[0] !== b || sizes.shape[1] !== n) {
      throw new Error(`proportional attention: token sizes [${sizes.shape.join(', ')}] do not match attention weights [${probs.shape.join(', ')}]`);
    }
    const w = probs.mul(sizes.reshape([b, 1, 1, n]));
    return w.div(w.sum(-1, true)) as tf.Tensor4D;
  });
}

/** Modules that have the proportional-attention hook, with the number of plug-ins that asked for it. */
const installed = new WeakMap<MultiHeadAttention, { users: number; handle: HookHandle }>();

/**
 * Hooks proportional attention into `modules` (the text tower's attention modules): whenever the forward
 * context's text state carries sizes (`TEXT_TOKENS.sizes`), each module's attention weights are re-weighted
 * by them; while sizes are null the hooks change nothing (bit-identical). Several plug-ins may ask for it
 * (padding, pruning, merging): each module gets one hook, shared, and registered when first asked for (so a
 * hook registered later on `attn_probs` reads the re-weighted weights); it comes off when the last handle
 * is removed.
 */
export function proportionalAttention(modules: readonly MultiHeadAttention[]): HookHandle {
  for (const m of modules) {
    if (m.kernelName !== softmaxKernel.name) throw new MclipError(`proportional attention supports the softmax kernel only; an attention module uses '${m.kernelName}'`);
  }
  for (const m of modules) {
    const entry = installed.get(m);
    if (entry) {
      entry.users++;
      continue;
    }
    const handle = m.get('attn_probs').registerForwardHook((_m, _x, p, ctx) => {
      const sizes = ctx?.get(TEXT_TOKENS)?.sizes;
      if (!sizes) return;
      return proportionalProbs(p as tf.Tensor4D, sizes);
    });
    installed.set(m, { users: 1, handle });
  }
  let live = true;
  return {
    remove: () => {
      if (!live) return;
      live = false;
      for (const m of modules) {
        const entry = installed.get(m);
        if (!entry) continue;
        if (--entry.users === 0) {
          entry.handle.remove();
          installed.delete(m);
        }
      }
    },
  };
}
