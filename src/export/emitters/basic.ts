/** ONNX emitters of the generic layers: containers, activations, convs, norms, linear. */
import { Sequential } from '../../base/nn/module.js';
import { Conv2d } from '../../base/layers/conv2d.js';
import { BatchNorm2d } from '../../base/layers/batch-norm.js';
import { ConvBn } from '../../base/layers/conv-bn.js';
import { Linear } from '../../base/layers/linear.js';
import { LayerNorm } from '../../base/layers/layer-norm.js';
import { Dropout, GELU } from '../../base/layers/activations.js';
import { Identity } from '../../base/layers/identity.js';
import { LayerScale } from '../../base/layers/layer-scale.js';
import { f32 } from '../weights.js';
import { foldConvBn } from '../../base/layers/fuse.js';
import { registerChannelFirstEmitter, registerEmitter } from '../registry.js';

/** The children in order; a Conv2d followed by an eval BatchNorm2d (ViT stem) becomes one conv. */
registerEmitter(Sequential, (em, s, x, name, layout) => {
  const kids = s.children();
  let y = x;
  for (let i = 0; i < kids.length; i++) {
    const [n, m] = kids[i];
    const next = kids[i + 1]?.[1];
    if (m instanceof Conv2d && next instanceof BatchNorm2d) {
      y = em.foldedConv(y, foldConvBn(m, next), m, `${name}.${n}`, em.convLayout(layout, name));
      i++;
      continue;
    }
    y = em.module(m, y, `${name}.${n}`, layout);
  }
  return y;
});

registerEmitter(Identity, (_em, _m, x) => x);
registerEmitter(Dropout, (_em, _m, x) => x);
registerEmitter(GELU, (em, _m, x) => em.gelu(x));
registerChannelFirstEmitter(Conv2d, (em, m, x, name, layout) => em.conv2dModule(m, x, name, layout));
registerChannelFirstEmitter(BatchNorm2d, (em, m, x, name, layout) => em.batchNorm(m, x, name, layout));
registerChannelFirstEmitter(ConvBn, (em, m, x, name, layout) => em.foldedConv(x, m.fused(), m.conv, name, layout));
registerEmitter(LayerNorm, (em, m, x, name) => em.layerNorm(m, x, name));
/** x ⊙ γ over the last axis (tokens). */
registerEmitter(LayerScale, (em, m, x, name) => em.g.node('Mul', [x, em.g.initF32(`${name}.gamma`, f32(m.gamma), [m.gamma.size])], {}, name));
registerEmitter(Linear, (em, m, x, name) => em.linear(x, m.weight, m.bias, name));
