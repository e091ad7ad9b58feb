/**
 * MAC counts of the built-in layers (per sample, 1 MAC = one multiply + one add) and of the softmax
 * attention kernel. Imported by ./cost.ts for the side effect.
 */
import { Conv2d } from '../base/layers/conv2d.js';
import { Linear } from '../base/layers/linear.js';
import { MHSA } from '../base/layers/mhsa.js';
import { MultiHeadAttention } from '../base/layers/multi-head-attention.js';
import { softmaxKernel } from '../base/nn/attention.js';
import type * as tf from '../base/tf.js';
import { GlobalPool2D } from '../base/model/mci.js';
import { ProjectionHead } from '../base/model/vit.js';
import { TextTransformer } from '../base/model/text-transformer.js';
import type { CostInfo } from './cost-registry.js';
import type { MacRecord } from './cost.js';
import { attentionRecord, registerAttentionCost, registerCost } from './cost-registry.js';

/** Ho·Wo·Co·(Ci/groups)·kh·kw (dense, depthwise and 1×1; the 1×11 text RepMixer convs too); output NHWC. */
registerCost(Conv2d, (m, shape, { name, tower }) => {
  const [, ho, wo, co] = shape;
  const [kh, kw] = m.kernel;
  const hw = ho * wo;
  return { name, tower, kind: 'conv', macs: hw * co * (m.inChannels / m.groups) * kh * kw, tokens: hw, scaling: hw > 1 ? 'tokens' : 'fixed' };
});

/** tokens·in·out, tokens = all leading positions of the output. */
registerCost(Linear, (m, shape, { name, tower, batch }) => {
  const rows = shape.reduce((a, c) => a * c, 1) / m.outFeatures / batch;
  return { name, tower, kind: 'linear', macs: rows * m.inFeatures * m.outFeatures, tokens: rows, scaling: 'tokens' };
});

/** MCi MHSA on NHWC maps: N = H·W tokens. */
registerCost(MHSA, (m, shape, info) => attentionRecord(m.kernelName, { heads: m.numHeads, tokens: shape[1] * shape[2], headDim: m.headDim, causal: false }, info));

/** Text / ViT attention on [B, N, C]. */
registerCost(MultiHeadAttention, (m, shape, info) => attentionRecord(m.kernelName, { heads: m.numHeads, tokens: shape[1], headDim: m.headDim, causal: m.causal }, info));

/** QKᵀ and A·V: 2·heads·N²·d. Causal attention is counted in full (TF.js computes the whole N×N product). */
registerAttentionCost(softmaxKernel.name, ({ heads, tokens, headDim }) => 2 * heads * tokens * tokens * headDim);

/** A projection matrix [in, out] held as a parameter, applied to the pooled rows of the module's output [B, …, out]. */
function projectionRecord(w: tf.Tensor, shape: number[], { name, tower, batch }: CostInfo): MacRecord {
  const [i, o] = w.shape as [number, number];
  const rows = shape.reduce((a, c) => a * c, 1) / o / batch;
  return { name, tower, kind: 'projection', macs: rows * i * o, tokens: rows, scaling: 'fixed' };
}

/** MCi head: spatial mean, then `proj`. */
registerCost(GlobalPool2D, (m, shape, info) => projectionRecord(m.proj, shape, info));
/** ViT-B classifier: CLS row @ `proj`. */
registerCost(ProjectionHead, (m, shape, info) => projectionRecord(m.proj, shape, info));
/** Text tower: the EOT row @ `projection_layer` (its layers are counted as their own records). */
registerCost(TextTransformer, (m, shape, info) => projectionRecord(m.projection, shape, info));
