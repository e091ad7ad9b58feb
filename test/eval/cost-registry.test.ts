import { beforeAll, describe, expect, test } from 'vitest';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { Module, Sequential } from '../../src/base/nn/module.js';
import { Linear } from '../../src/base/layers/linear.js';
import { MultiHeadAttention } from '../../src/base/layers/multi-head-attention.js';
import { registerAttentionKernel, softmaxKernel } from '../../src/base/nn/attention.js';
import { costFor, macsByKind, profileMacs, registerAttentionCost, registerCost, rescaleMacs } from '../../src/eval/cost.js';

beforeAll(async () => {
  await initBackend({ backend: 'wasm', quiet: true, gradients: false });
});

/** A Linear that also counts its bias adds (as a plug-in might). */
class BiasCountingLinear extends Linear {}
/** Counted like BiasCountingLinear (nearest registered ancestor). */
class DeeperLinear extends BiasCountingLinear {}
/** Counted like Linear. */
class PlainSubLinear extends Linear {}

registerCost(BiasCountingLinear, (m, shape, { name, tower, batch }) => {
  const rows = shape.reduce((a, c) => a * c, 1) / m.outFeatures / batch;
  return { name, tower, kind: 'linear', macs: rows * (m.inFeatures + 1) * m.outFeatures, tokens: rows, scaling: 'tokens' };
});

/** Holds its own rank-2 `proj` (the projection rule for classes without a registered count). */
class Head extends Module {
  constructor() {
    super();
    this.addParam('proj', tf.ones([6, 3]));
  }

  forward(x: tf.Tensor): tf.Tensor {
    return tf.matMul(x as tf.Tensor2D, this.param('proj') as tf.Tensor2D);
  }
}

describe('cost registry', () => {
  test('lookup walks the prototype chain; a class without a registered count is not counted; hooks are gone afterwards', () => {
    expect(costFor(new PlainSubLinear(2, 2))).toBe(costFor(new Linear(2, 2)));
    const seq = new Sequential([new PlainSubLinear(4, 5), new BiasCountingLinear(5, 6), new DeeperLinear(6, 6), new Head()]);
    const x = tf.zeros([2, 4]);
    const rec = profileMacs(seq, () => seq.call(x), { tower: 'text' });
    expect(rec.map((r) => [r.name, r.kind, r.macs])).toEqual([
      ['0', 'linear', 4 * 5],
      ['1', 'linear', 6 * 6],
      ['2', 'linear', 7 * 6],
    ]);
    // Holding a `proj` matrix is not enough: a layer is counted by what its class registers.
    registerCost(Head, (m, shape, { name, tower }) => ({ name, tower, kind: 'projection', macs: 6 * shape[1], tokens: 1, scaling: 'fixed' }));
    const again = profileMacs(seq, () => seq.call(x), { tower: 'text' });
    expect(again.map((r) => [r.name, r.kind, r.macs]).at(-1)).toEqual(['3', 'projection', 6 * 3]);
    x.dispose();
    expect(seq.hasHooks()).toBe(false);
    expect(() => registerCost(BiasCountingLinear, () => null)).toThrow(/already registered/);
    seq.dispose();
  });

  test('attention cost per kernel: a linear-time kernel rescales ∝ N; a kernel without a count fails by path', () => {
    registerAttentionKernel({ name: 'linear-attn-toy', apply: softmaxKernel.apply });
    registerAttentionCost('linear-attn-toy', ({ heads, tokens, headDim }) => 2 * heads * tokens * headDim * headDim, { scaling: 'tokens' });
    const attn = new MultiHeadAttention(16, 4, undefined, { kernel: 'linear-attn-toy' });
    const seq = new Sequential([attn]);
    const x = tf.zeros([1, 9, 16]);
    const rec = profileMacs(seq, () => seq.call(x), { tower: 'text' });
    expect(macsByKind(rec).attention).toBe(2 * 4 * 9 * 4 * 4);
    expect(macsByKind(rescaleMacs(rec, { tokensKept: { '0': 3 } })).attention).toBe(2 * 4 * 3 * 4 * 4);

    registerAttentionKernel({ name: 'uncounted-toy', apply: softmaxKernel.apply });
    attn.kernelName = 'uncounted-toy';
    expect(() => profileMacs(seq, () => seq.call(x), { tower: 'text' })).toThrow(/^cost: 0 uses the attention kernel 'uncounted-toy', which has no MAC count \(registerAttentionCost; registered: softmax, linear-attn-toy\)$/);
    expect(seq.hasHooks()).toBe(false);
    x.dispose();
    seq.dispose();
  });
});
