import * as tf from '../base/tf.js';
import { MclipError } from '../errors.js';
import type { AttentionCall, AttentionKernel, AttentionParams } from '../base/nn/attention.js';
import type { ForwardContext } from '../base/nn/context.js';
import { TEXT_TOKENS } from '../base/model/text-context.js';

/**
 * Sigmoid attention (methods.md §5): O = σ(q·kᵀ/√d + b)·V, element-wise, no row normalisation.
 *
 * - The bias b is the kernel parameter `bias` (the module's `kernelParams`, recorded per layer in the
 *   config as `attentionParams`, so it comes back from a checkpoint and is fixed across training, inference
 *   and export). Recommended b = −ln n with n the keys per query at training (`sigmoidBias`); a module that
 *   records none uses −ln N of the keys present (which changes when tokens are pruned: record it).
 * - Masked keys (the additive mask's −∞: the causal mask) get −∞ logits, σ(−∞) = 0: they contribute exactly
 *   nothing, whatever b is.
 * - Token sizes: when the forward context's text state carries sizes s (`TEXT_TOKENS.sizes`, merged tokens),
 *   key j's weight is multiplied by s_j (a token standing for s copies counts s times; no renormalisation,
 *   so no + ln s); a size of 0 (a dead slot) removes the key exactly.
 * - The weights (after the sizes) pass through the module's `attn_probs` hook site, so masks and pruning
 *   hooks read or replace them as with softmax.
 */
export const SIGMOID_KERNEL = 'sigmoid';

/** Name of the bias parameter in `kernelParams` / `attentionParams`. */
export const BIAS_PARAM = 'bias';

/** The recommended bias for n keys per query: −ln n. */
export function sigmoidBias(n: number): number {
  if (!Number.isInteger(n) || n < 1) throw new MclipError(`sigmoid attention: the number of keys must be a positive integer, got ${n}`);
  return -Math.log(n);
}

/** The bias of a call: the recorded parameter, else −ln(keys). */
export function biasOf(params: AttentionParams, keys: number): number {
  const b = params[BIAS_PARAM];
  if (b === undefined) return sigmoidBias(keys);
  if (!Number.isFinite(b)) throw new MclipError(`sigmoid attention: bias must be finite, got ${b}`);
  return b;
}

/** Token sizes [B, keys] from the forward context's text state, or null while nothing was merged. */
export function keySizes(ctx: ForwardContext | undefined, batch: number, keys: number): tf.Tensor2D | null {
  const sizes = ctx?.get(TEXT_TOKENS)?.sizes ?? null;
  if (!sizes) return null;
  if (sizes.shape[0] !== batch || sizes.shape[1] !== keys) {
    throw new MclipError(`sigmoid attention: token sizes [${sizes.shape.join(', ')}] do not match ${batch} rows of ${keys} keys`);
  }
  return sizes;
}

/** σ(q·kᵀ + b + mask) (× sizes), through `probs`, times v. q is already scaled by d^-1/2. */
function applySigmoid(
  q: tf.Tensor4D,
  k: tf.Tensor4D,
  v: tf.Tensor4D,
  mask: tf.Tensor2D | null,
  probs: (p: tf.Tensor4D) => tf.Tensor4D,
  call: AttentionCall = { params: {} },
): tf.Tensor4D {
  return tf.tidy(() => {
    const b = k.shape[0];
    const n = k.shape[2];
    let logits = tf.matMul(q, k, false, true).add(biasOf(call.params, n));
    if (mask) logits = logits.add(mask);
    let p = tf.sigmoid(logits) as tf.Tensor4D;
    const sizes = keySizes(call.ctx, b, n);
    if (sizes) p = p.mul(sizes.reshape([b, 1, 1, n]));
    return tf.matMul(probs(p), v) as tf.Tensor4D;
  });
}

export const sigmoidKernel: AttentionKernel = { name: SIGMOID_KERNEL, apply: applySigmoid };
