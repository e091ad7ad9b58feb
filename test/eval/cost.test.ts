import { beforeAll, describe, expect, test } from 'vitest';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { Conv2d } from '../../src/base/layers/conv2d.js';
import { Linear } from '../../src/base/layers/linear.js';
import { MultiHeadAttention } from '../../src/base/layers/multi-head-attention.js';
import { Sequential } from '../../src/base/nn/module.js';
import { CLIP } from '../../src/base/model/clip.js';
import { getConfig } from '../../src/base/model/configs.js';
import { reparameterize } from '../../src/base/model/reparameterize.js';
import { countParams, macsByKind, modelCost, presentTokens, profileMacs, rescaleMacs, sumMacs, textMacsForTokens } from '../../src/eval/cost.js';

beforeAll(async () => {
  await initBackend({ backend: 'wasm', quiet: true, gradients: false });
});

describe('MACs of single layers = hand formula', () => {
  test('dense Conv2d: Ho·Wo·Co·Ci·kh·kw', () => {
    const conv = new Conv2d(3, 8, 3, { stride: 2, padding: [1, 1] });
    const x = tf.zeros([1, 17, 17, 3]);
    const r = profileMacs(conv, () => conv.call(x), { tower: 'image' });
    expect(r).toHaveLength(1);
    expect(r[0]).toMatchObject({ kind: 'conv', tokens: 81, macs: 9 * 9 * 8 * 3 * 3 * 3 });
    x.dispose();
    conv.dispose();
  });

  test('depthwise Conv2d (1×11, multiplier 2): Ho·Wo·Co·(Ci/groups)·kh·kw', () => {
    const conv = new Conv2d(8, 16, [1, 11], { groups: 8 });
    const x = tf.zeros([1, 1, 20, 8]);
    const [r] = profileMacs(conv, () => conv.call(x), { tower: 'text' });
    expect(r.macs).toBe(20 * 16 * 1 * 11);
    x.dispose();
    conv.dispose();
  });

  test('Linear: tokens·in·out per sample (batch 2)', () => {
    const lin = new Linear(10, 7);
    const x = tf.zeros([2, 5, 10]);
    const [r] = profileMacs(lin, () => lin.call(x), { tower: 'text' });
    expect(r).toMatchObject({ kind: 'linear', tokens: 5, macs: 5 * 10 * 7 });
    x.dispose();
    lin.dispose();
  });

  test('attention: 2·heads·N²·d plus its projections; tokensKept rescales', () => {
    const attn = new MultiHeadAttention(16, 4);
    const seq = new Sequential([attn]);
    const x = tf.zeros([1, 9, 16]);
    const rec = profileMacs(seq, () => seq.call(x), { tower: 'text' });
    x.dispose();
    const k = macsByKind(rec);
    expect(k.attention).toBe(2 * 4 * 81 * 4);
    expect(k.linear).toBe(9 * 16 * 48 + 9 * 16 * 16);
    const half = rescaleMacs(rec, { tokensKept: { '0': 3 } });
    expect(macsByKind(half).attention).toBe(2 * 4 * 9 * 4);
    expect(macsByKind(half).linear).toBe(3 * 16 * 48 + 3 * 16 * 16);
    expect(sumMacs(rescaleMacs(rec, { tokens: 9 }))).toBe(sumMacs(rec));
    seq.dispose();
  });

  test('presentTokens: first arg-max (EOT) position + 1', () => {
    expect(presentTokens(Int32Array.from([5, 9, 7, 0, 0, 5, 6, 9, 8, 9]), 5)).toEqual([2, 3]);
  });
});

describe('mobileclip_tiny', () => {
  test('params per tower and MACs: deterministic, > 0, text MACs follow the tokens present', () => {
    const m = new CLIP(getConfig('mobileclip_tiny'));
    const before = tf.memory().numTensors;
    const a = modelCost(m);
    const b = modelCost(m);
    expect(tf.memory().numTensors).toBe(before);
    expect(a.macs).toEqual(b.macs);
    expect(a.macs.image).toBeGreaterThan(0);
    expect(a.macs.text).toBeGreaterThan(0);
    expect(Number.isInteger(a.macs.image)).toBe(true);
    const p = countParams(m);
    expect(p.image + p.text + 1).toBe(p.total); // + logit_scale
    expect(p.total).toBe(m.numParams());
    expect(p.textTokenTable).toBe(4096 * 128);
    // stage-4 attention of the image tower: 2·heads·N²·d at 64/32 = 2×2 tokens
    const att = a.records.filter((r) => r.tower === 'image' && r.kind === 'attention');
    expect(att).toHaveLength(1);
    expect(att[0].macs).toBe(2 * 4 * 2 * 2 * 2 * 2 * 32);
    // all 77 positions present = full MACs; fewer tokens = fewer MACs
    const full = new Int32Array(77).fill(1);
    full[76] = 2;
    expect(textMacsForTokens(a.records, full, 77)).toBeCloseTo(a.macs.text, 3);
    const short = new Int32Array(77);
    short.set([1, 5, 6, 9]);
    const s = textMacsForTokens(a.records, short, 77);
    expect(s).toBeGreaterThan(0);
    expect(s).toBeLessThan(a.macs.text / 10);
    // fusing removes the train-time branches
    reparameterize(m);
    const f = modelCost(m);
    expect(f.macs.image).toBeLessThan(a.macs.image);
    expect(f.macs.text).toBe(a.macs.text);
    m.dispose();
  });
});
