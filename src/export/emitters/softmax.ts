/** ONNX form of the built-in softmax attention kernel: softmax(q·kᵀ + mask)·v. */
import { softmaxKernel } from '../../base/nn/attention.js';
import { ai } from '../graph.js';
import { registerAttentionEmitter } from '../registry.js';

registerAttentionEmitter(softmaxKernel.name, (em, a, name) => {
  let logits = em.g.node('MatMul', [a.q, a.kT], {}, `${name}.logits`);
  if (a.mask) logits = em.g.node('Add', [logits, a.mask]);
  const p = em.g.node('Softmax', [logits], { axis: ai(-1) }, `${name}.softmax`);
  return em.g.node('MatMul', [p, a.v]);
});
