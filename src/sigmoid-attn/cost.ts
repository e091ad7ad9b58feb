/**
 * MACs of sigmoid attention per sample: q·kᵀ and A·V as softmax (2·h·N²·d), plus the bias add on each of
 * the h·N² logits (the sigmoid itself, like softmax's exponentials, is not a MAC).
 */
import { registerAttentionCost } from '../eval/cost-registry.js';
import { SIGMOID_KERNEL } from './kernel.js';

export function sigmoidAttentionMacs(heads: number, tokens: number, headDim: number): number {
  return 2 * heads * tokens * tokens * headDim + heads * tokens * tokens;
}

registerAttentionCost(SIGMOID_KERNEL, ({ heads, tokens, headDim }) => sigmoidAttentionMacs(heads, tokens, headDim));
