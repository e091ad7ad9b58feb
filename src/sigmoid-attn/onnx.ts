/**
 * ONNX form of sigmoid attention: Sigmoid(q·kᵀ + b + mask)·v, b the module's recorded bias (a constant in
 * the graph) or, when none is recorded, −ln N computed from kᵀ's shape. Token sizes do not appear: an
 * exported graph runs on full sequences.
 */
import { ai } from '../export/graph.js';
import { registerAttentionEmitter } from '../export/registry.js';
import { BIAS_PARAM, SIGMOID_KERNEL } from './kernel.js';

registerAttentionEmitter(SIGMOID_KERNEL, (em, a, name) => {
  const g = em.g;
  let logits = g.node('MatMul', [a.q, a.kT], {}, `${name}.logits`);
  const recorded = a.params[BIAS_PARAM];
  const bias =
    recorded !== undefined
      ? g.scalarF32(recorded)
      : g.node('Neg', [g.node('Log', [g.node('Cast', [g.node('Shape', [a.kT], { start: ai(3), end: ai(4) })], { to: ai(1) })])], {}, `${name}.sigmoid_bias`);
  logits = g.node('Add', [logits, bias]);
  if (a.mask) logits = g.node('Add', [logits, a.mask]);
  const p = g.node('Sigmoid', [logits], {}, `${name}.sigmoid`);
  return g.node('MatMul', [p, a.v]);
});
