/** ONNX emitters of the MCi (FastViT) image-tower layers and the `mct` text RepMixer blocks. */
import type * as tf from '../../base/tf.js';
import { MclipError } from '../../errors.js';
import { MobileOneBlock } from '../../base/layers/mobileone-block.js';
import { ReparamLargeKernelConv } from '../../base/layers/reparam-large-kernel-conv.js';
import { PatchEmbed } from '../../base/layers/patch-embed.js';
import { RepCPE } from '../../base/layers/rep-cpe.js';
import { RepMixer } from '../../base/layers/repmixer.js';
import { RepMixerBlock } from '../../base/layers/repmixer-block.js';
import { ConvFFN } from '../../base/layers/conv-ffn.js';
import { SEBlock, SqueezeExcite } from '../../base/layers/squeeze-excite.js';
import { AttentionBlock } from '../../base/layers/attention-block.js';
import { LayerNorm } from '../../base/layers/layer-norm.js';
import { GlobalPool2D } from '../../base/model/mci.js';
import type { OnnxEmitter } from '../emit.js';
import { registerChannelFirstEmitter, registerEmitter, type ConvLayout } from '../registry.js';
import { f32, ownParam } from '../weights.js';

function notFused(name: string): MclipError {
  return new MclipError(`export: ${name} is not reparameterised; fuse the model first (reparameterize)`);
}

/** fc2(GELU(fc1(BN(dwconv(x))))) with BN folded into the dwconv and `outScale` into fc2. */
function convFfn(em: OnnxEmitter, f: ConvFFN, x: string, name: string, layout: ConvLayout, outScale: tf.Tensor | null): string {
  const y = em.foldedConv(x, f.conv.fused(), f.conv.conv, `${name}.conv`, layout);
  const h = em.gelu(em.conv2dModule(f.fc1, y, `${name}.fc1`, layout));
  return em.conv2dModule(f.fc2, h, `${name}.fc2`, layout, { outScale });
}

/** x + γ ⊙ ConvFFN(x), γ folded into fc2. */
function convFfnResidual(em: OnnxEmitter, f: ConvFFN, x: string, gamma: tf.Tensor, name: string, layout: ConvLayout): string {
  return em.g.node('Add', [x, convFfn(em, f, x, name, layout, gamma)], {}, `${name}.residual`);
}

registerChannelFirstEmitter(MobileOneBlock, (em, m, x, name, layout) => {
  let y = em.foldedConv(x, m.fusedKernelBias(), { depthwise: m.groups !== 1, stride: m.stride, padding: m.padding }, `${name}.reparam_conv`, layout);
  const se = m.se;
  if (se) y = em.squeezeExcite(se.reduce, se.expand, y, `${name}.se`, layout);
  return m.useAct ? em.gelu(y) : y;
});

registerChannelFirstEmitter(ReparamLargeKernelConv, (em, m, x, name, layout) => {
  const lkb = m.lkbReparam;
  if (!lkb) throw notFused(name);
  let y = em.conv2dModule(lkb, x, `${name}.lkb_reparam`, layout);
  const se = m.se;
  if (se) y = em.squeezeExcite(se.fc1, se.fc2, y, `${name}.se`, layout);
  return em.gelu(y);
});

registerChannelFirstEmitter(PatchEmbed, (em, m, x, name, layout) => em.module(m.proj, x, `${name}.proj`, layout));

registerChannelFirstEmitter(RepCPE, (em, m, x, name, layout) => {
  const rc = m.reparamConv;
  if (rc) return em.conv2dModule(rc, x, `${name}.reparam_conv`, layout);
  const pe = m.pe;
  if (!pe) throw new MclipError(`export: ${name}: RepCPE has neither pe nor reparam_conv`);
  return em.g.node('Add', [em.conv2dModule(pe, x, `${name}.pe`, layout), x], {}, name);
});

registerChannelFirstEmitter(RepMixer, (em, m, x, name, layout) => {
  const rc = m.reparamConv;
  if (!rc) throw notFused(name);
  return em.conv2dModule(rc, x, `${name}.reparam_conv`, layout);
});

registerChannelFirstEmitter(RepMixerBlock, (em, m, x, name, layout) => {
  const y = em.module(m.tokenMixer, x, `${name}.token_mixer`, layout);
  return convFfnResidual(em, m.convffn, y, m.layerScale, `${name}.convffn`, layout);
});

registerChannelFirstEmitter(ConvFFN, (em, m, x, name, layout) => convFfn(em, m, x, name, layout, null));
registerChannelFirstEmitter(SEBlock, (em, m, x, name, layout) => em.squeezeExcite(m.reduce, m.expand, x, name, layout));
registerChannelFirstEmitter(SqueezeExcite, (em, m, x, name, layout) => em.squeezeExcite(m.fc1, m.fc2, x, name, layout));

/**
 * x + γ₁ ⊙ MHSA(BN(x)); x + γ₂ ⊙ ConvFFN(x), on NCHW maps (BN folded into qkv, γ into the projections).
 * QK-norm: LayerNorms on each head's q and k (the emitter's attention). Hybrid-norm: x + γ₁ ⊙ LN(MHSA(BN(x))),
 * the LayerNorm over the channels of the [B, N, C] tokens and γ₁ a Mul after it.
 */
registerEmitter(AttentionBlock, (em, m, x, name) => {
  const mh = m.tokenMixer;
  const pre = m.preNorm;
  const c = pre instanceof LayerNorm ? pre.dim : pre.numFeatures;
  const shape = em.g.node('Shape', [x], {}, `${name}.shape`);
  let tokens = em.g.transpose(em.g.reshape(x, [0, c, -1]), [0, 2, 1], `${name}.tokens`);
  // A BatchNorm pre-norm folds into qkv; a LayerNorm one (fastvit_mci3/4) runs on the tokens.
  if (pre instanceof LayerNorm) tokens = em.layerNorm(pre, tokens, `${name}.norm`);
  const aff = pre instanceof LayerNorm ? null : pre.affine();
  const outNorm = m.attnOutNorm;
  const gamma = ownParam(m, 'layer_scale_1');
  try {
    let o = em.attention(tokens, mh.qkv.weight, mh.qkv.bias, mh.numHeads, mh.proj.weight, mh.proj.bias, `${name}.token_mixer`, {
      kernel: mh.kernelName,
      kernelParams: mh.kernelParams,
      qkNorm: mh.qkNorm,
      preScale: aff?.scale,
      preShift: aff?.shift,
      outScale: outNorm ? null : gamma,
    });
    if (outNorm) {
      o = em.layerNorm(outNorm, o, `${name}.attn_out_norm`);
      o = em.g.node('Mul', [o, em.g.initF32(`${name}.layer_scale_1`, f32(gamma), [c])], {}, `${name}.attn_scaled`);
    }
    // Back to NCHW; the residual needs the projection width to equal C, so x's shape fits.
    const back = em.g.reshape(em.g.transpose(o, [0, 2, 1]), shape);
    const y = em.g.node('Add', [x, back], {}, `${name}.mha_residual`);
    return convFfnResidual(em, m.convffn, y, ownParam(m, 'layer_scale_2'), `${name}.convffn`, '2d');
  } finally {
    aff?.scale.dispose();
    aff?.shift.dispose();
  }
});

/** Global average pool, then `x @ proj` (+ bias, timm's head). */
registerEmitter(GlobalPool2D, (em, m, x, name) => {
  const pooled = em.g.reduceMean(x, [2, 3], false, `${name}.pool`);
  return em.linear(pooled, m.proj, m.bias, `${name}.proj`);
});
