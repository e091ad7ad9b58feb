/** ONNX emitters of the token-sequence transformer layers (text towers, ViT-B): [B, N, C]. */
import { MultiHeadAttention } from '../../base/layers/multi-head-attention.js';
import { TransformerEncoder } from '../../base/layers/transformer-encoder.js';
import { registerEmitter } from '../registry.js';

registerEmitter(MultiHeadAttention, (em, m, x, name) =>
  em.attention(x, m.qkvProj.weight, m.qkvProj.bias, m.numHeads, m.outProj.weight, m.outProj.bias, name, {
    kernel: m.kernelName,
    kernelParams: m.kernelParams,
    qkNorm: m.qkNorm,
    causal: m.causal ? em.seqLen(name) : undefined,
  }),
);

/** Pre-LN residual block: x + mha(x), then + ffn(·). */
registerEmitter(TransformerEncoder, (em, m, x, name) => {
  const y = em.g.node('Add', [x, em.module(m.preNormMha, x, `${name}.pre_norm_mha`, 'tokens')], {}, `${name}.mha_residual`);
  return em.g.node('Add', [y, em.module(m.preNormFfn, y, `${name}.pre_norm_ffn`, 'tokens')], {}, name);
});
