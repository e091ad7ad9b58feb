/**
 * Sigmoid attention's kernel (methods.md §5): the bias, masking, a float64 reference, a finite-difference
 * gradient, token sizes and the attn_probs hook site; a micro model with sigmoid attention saves, loads
 * (kernel and bias from the checkpoint), reparameterizes and differs from softmax.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { attentionKernel, causalMask } from '../../src/base/nn/attention.js';
import { ForwardContext } from '../../src/base/nn/context.js';
import { MHSA } from '../../src/base/layers/mhsa.js';
import { MultiHeadAttention } from '../../src/base/layers/multi-head-attention.js';
import { CLIP } from '../../src/base/model/clip.js';
import { loadModel, saveModel } from '../../src/base/model/checkpoint.js';
import { reparameterize } from '../../src/base/model/reparameterize.js';
import { TEXT_TOKENS } from '../../src/base/model/text-context.js';
import { BIAS_PARAM, SIGMOID_KERNEL, sigmoidBias, sigmoidKernel, withSigmoidAttention } from '../../src/sigmoid-attn/index.js';
import { microConfig, microTokenRows } from '../micro-config.js';
import { relErr } from '../model/helpers.js';
import { perturb, rand } from '../export/helpers.js';

beforeAll(async () => {
  await initBackend({ backend: 'wasm', quiet: true });
});

const dir = mkdtempSync(join(tmpdir(), 'mclip-sigmoid-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function randn(shape: [number, number, number, number], seed: number, scale = 1): tf.Tensor4D {
  const r = rand(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor4d(Float32Array.from({ length: n }, () => (r() * 2 - 1) * scale), shape);
}

/** Per-element float64 σ(q·kᵀ + b + mask)·v (× sizes) on [B, H, N, d] arrays. */
function reference(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, bias: number, mask: Float32Array | null, sizes: Float32Array | null): Float64Array {
  const [B, H, N, D] = q.shape;
  const [qd, kd, vd] = [q.dataSync(), k.dataSync(), v.dataSync()];
  const out = new Float64Array(B * H * N * D);
  for (let b = 0; b < B; b++)
    for (let h = 0; h < H; h++)
      for (let i = 0; i < N; i++)
        for (let j = 0; j < N; j++) {
          const m = mask ? mask[i * N + j] : 0;
          if (m === -Infinity) continue;
          let l = bias + m;
          const base = ((b * H + h) * N) * D;
          for (let c = 0; c < D; c++) l += qd[base + i * D + c] * kd[base + j * D + c];
          const w = (1 / (1 + Math.exp(-l))) * (sizes ? sizes[b * N + j] : 1);
          for (let c = 0; c < D; c++) out[base + i * D + c] += w * vd[base + j * D + c];
        }
  return out;
}

const id = (p: tf.Tensor4D) => p;

describe('the sigmoid kernel', () => {
  test('is registered; the bias is −ln n (recorded or, when absent, from the keys present)', () => {
    expect(attentionKernel(SIGMOID_KERNEL)).toBe(sigmoidKernel);
    expect(sigmoidBias(77)).toBeCloseTo(-4.3438, 4);
    expect(sigmoidBias(64)).toBeCloseTo(-4.1589, 4);
    expect(sigmoidBias(197)).toBeCloseTo(-5.2832, 4);
    // Zero logits: every weight is σ(b); with v = 1 every output is n·σ(b) (≈ 1 for b = −ln n).
    const n = 6;
    const z = tf.zeros([1, 1, n, 2]) as tf.Tensor4D;
    const ones = tf.ones([1, 1, n, 2]) as tf.Tensor4D;
    const σ = (x: number) => 1 / (1 + Math.exp(-x));
    const auto = sigmoidKernel.apply(z, z, ones, null, id).dataSync();
    for (const x of auto) expect(x).toBeCloseTo(n * σ(-Math.log(n)), 6);
    const fixed = sigmoidKernel.apply(z, z, ones, null, id, { params: { [BIAS_PARAM]: -2 } }).dataSync();
    for (const x of fixed) expect(x).toBeCloseTo(n * σ(-2), 6);
    tf.dispose([z, ones]);
  });

  test('a masked key contributes exactly nothing (causal mask; a zero-size key)', () => {
    const [q, k, v] = [randn([2, 2, 5, 4], 1, 2), randn([2, 2, 5, 4], 2, 2), randn([2, 2, 5, 4], 3)];
    const mask = causalMask(5);
    const o = sigmoidKernel.apply(q, k, v, mask, id, { params: { bias: -1 } });
    // Changing the masked keys' values (j > i) must not change row i at all: row 0 sees key 0 only.
    const v2 = tf.tidy(() => v.add(tf.oneHot(tf.tensor1d([1, 2, 3, 4], 'int32'), 5).sum(0).reshape([1, 1, 5, 1]).mul(100))) as tf.Tensor4D;
    const o2 = sigmoidKernel.apply(q, k, v2, mask, id, { params: { bias: -1 } });
    const [a, b] = [o.arraySync(), o2.arraySync()];
    for (let bb = 0; bb < 2; bb++) for (let h = 0; h < 2; h++) expect(b[bb][h][0]).toEqual(a[bb][h][0]);
    // The attention weights themselves are exactly 0 above the diagonal.
    let probs: number[][][][] = [];
    sigmoidKernel.apply(q, k, v, mask, (p) => ((probs = p.arraySync()), p), { params: {} });
    for (let i = 0; i < 5; i++) for (let j = i + 1; j < 5; j++) expect(probs[1][1][i][j]).toBe(0);
    // A key of size 0 (a dead slot) is removed exactly: same output as without that key.
    const sizes = tf.tensor2d([1, 1, 1, 1, 0, 1, 1, 1, 1, 0], [2, 5]);
    const ctx = new ForwardContext();
    ctx.set(TEXT_TOKENS, { tokens: tf.zeros([2, 5], 'int32') as tf.Tensor2D, eot: tf.zeros([2], 'int32') as tf.Tensor1D, positions: null, sizes });
    const withDead = sigmoidKernel.apply(q, k, v, null, id, { params: { bias: -1 }, ctx });
    const cut = (t: tf.Tensor4D) => t.slice([0, 0, 0, 0], [2, 2, 4, 4]) as tf.Tensor4D;
    const without = sigmoidKernel.apply(cut(q), cut(k), cut(v), null, id, { params: { bias: -1 } });
    expect(relErr(without.dataSync(), cut(withDead).dataSync())).toBeLessThan(1e-6);
    ctx.endPass();
    tf.dispose([q, k, v, mask, o, v2, o2, withDead, without]);
  });

  test('matches a per-element float64 reference (bias, causal mask, token sizes)', () => {
    const [q, k, v] = [randn([2, 3, 7, 5], 4, 1.5), randn([2, 3, 7, 5], 5, 1.5), randn([2, 3, 7, 5], 6)];
    const mask = causalMask(7);
    const sizeData = Float32Array.from({ length: 14 }, (_, i) => 1 + (i % 3));
    const sizes = tf.tensor2d(sizeData, [2, 7]);
    const ctx = new ForwardContext();
    ctx.set(TEXT_TOKENS, { tokens: tf.zeros([2, 7], 'int32') as tf.Tensor2D, eot: tf.zeros([2], 'int32') as tf.Tensor1D, positions: null, sizes });
    const b = sigmoidBias(7);
    const cases: [tf.Tensor2D | null, Float32Array | null, ForwardContext | undefined][] = [
      [null, null, undefined],
      [mask, null, undefined],
      [mask, sizeData, ctx],
    ];
    for (const [m, s, c] of cases) {
      const got = sigmoidKernel.apply(q, k, v, m, id, { params: { bias: b }, ctx: c });
      expect(relErr(reference(q, k, v, b, m ? m.dataSync() as Float32Array : null, s), got.dataSync())).toBeLessThan(1e-6);
      got.dispose();
    }
    ctx.endPass();
    tf.dispose([q, k, v, mask]);
  });

  test('the attn_probs site sees the weights (× sizes) and what it returns is used', () => {
    const [q, k, v] = [randn([1, 2, 4, 3], 7), randn([1, 2, 4, 3], 8), randn([1, 2, 4, 3], 9)];
    const zeroed = sigmoidKernel.apply(q, k, v, null, (p) => tf.zerosLike(p) as tf.Tensor4D, { params: {} });
    expect(Math.max(...zeroed.dataSync().map(Math.abs))).toBe(0);
    tf.dispose([q, k, v, zeroed]);
  });

  test('finite-difference gradient check (q, k, v) on a tiny case', () => {
    const [q, k, v] = [randn([1, 1, 3, 2], 10), randn([1, 1, 3, 2], 11), randn([1, 1, 3, 2], 12)];
    const mask = causalMask(3);
    const w = randn([1, 1, 3, 2], 13);
    const loss = (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => sigmoidKernel.apply(a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D, mask, id, { params: { bias: -0.7 } }).mul(w).sum() as tf.Scalar;
    const grads = tf.grads(loss)([q, k, v]);
    const inputs = [q, k, v];
    const h = 1e-2;
    for (let t = 0; t < 3; t++) {
      const base = inputs[t].dataSync();
      const g = grads[t].dataSync();
      for (let i = 0; i < base.length; i++) {
        const at = (dx: number) => {
          const x = Float32Array.from(base);
          x[i] += dx;
          const moved = inputs.map((u, j) => (j === t ? tf.tensor(x, u.shape) : u));
          const val = tf.tidy(() => loss(moved[0], moved[1], moved[2]).dataSync()[0]);
          moved[t].dispose();
          return val;
        };
        const fd = (at(h) - at(-h)) / (2 * h);
        expect(Math.abs(fd - g[i])).toBeLessThan(2e-3 + 1e-2 * Math.abs(fd));
      }
    }
    tf.dispose([q, k, v, mask, w, ...grads]);
  });
});

describe('a micro model with sigmoid attention', () => {
  test('config records kernel and bias; saves, loads (kernel and bias from the checkpoint), reparameterizes; differs from softmax', async () => {
    const softCfg = microConfig('mobileclip_tiny_base');
    softCfg.image = { ...softCfg.image, imageSize: 64 };
    const cfg = withSigmoidAttention(softCfg);
    const soft = new CLIP(softCfg, { seed: 3 });
    const sig = new CLIP(cfg, { seed: 3 });
    for (const m of [soft, sig]) {
      m.eval();
      perturb(m, 3);
    }
    const attn = [...sig.namedModules()].filter(([, m]) => m instanceof MHSA || m instanceof MultiHeadAttention);
    expect(attn.length).toBeGreaterThanOrEqual(2);
    for (const [p, m] of attn) {
      const mod = m as MHSA | MultiHeadAttention;
      expect(mod.kernelName).toBe(SIGMOID_KERNEL);
      expect(mod.kernelParams.bias).toBeCloseTo(p.startsWith('text') ? -Math.log(16) : -Math.log(4), 6);
    }

    const images = tf.tidy(() => tf.randomUniform([2, 64, 64, 3], 0, 1, 'float32', 5));
    const tokens = microTokenRows();
    const feats = (m: CLIP) => {
      const f = m.forwardPair(images, tokens);
      const out = { image: f.image.dataSync().slice(), text: f.text.dataSync().slice() };
      tf.dispose([f.image, f.text, f.scale]);
      return out;
    };
    const ref = feats(sig);
    const sm = feats(soft);
    expect(relErr(sm.text, ref.text)).toBeGreaterThan(1e-3);
    expect(relErr(sm.image, ref.image)).toBeGreaterThan(1e-3);

    const file = join(dir, 'sigmoid.safetensors');
    saveModel(sig, file);
    const loaded = await loadModel(file);
    // The stored config comes back with every layer's kernel and bias (the shapes alone say softmax).
    expect(loaded.config.text.layers).toEqual(cfg.text.layers);
    expect(loaded.config.image.kind === 'mci' && loaded.config.image.stages).toEqual(cfg.image.kind === 'mci' && cfg.image.stages);
    const lm = loaded.model;
    lm.eval();
    for (const [p, m] of attn) {
      const got = lm.get(p) as MHSA | MultiHeadAttention;
      expect(got.kernelName).toBe(SIGMOID_KERNEL);
      expect(got.kernelParams).toEqual((m as MHSA | MultiHeadAttention).kernelParams);
    }
    const back = feats(lm);
    expect(relErr(ref.text, back.text)).toBeLessThan(1e-6);
    expect(relErr(ref.image, back.image)).toBeLessThan(1e-6);

    reparameterize(lm);
    const fused = feats(lm);
    expect(relErr(ref.text, fused.text)).toBeLessThan(1e-4);
    expect(relErr(ref.image, fused.image)).toBeLessThan(1e-4);
    const fusedFile = join(dir, 'sigmoid-fused.safetensors');
    saveModel(lm, fusedFile);
    const again = await loadModel(fusedFile);
    again.model.eval();
    expect(relErr(ref.text, feats(again.model).text)).toBeLessThan(1e-4);
    for (const [p] of attn) expect((again.model.get(p) as MHSA | MultiHeadAttention).kernelParams.bias).toBeLessThan(0);

    // The attn_probs hook site is passed in the model: a hook sees weights in (0, 1) and its result is used.
    const sitePath = `${attn.find(([p]) => p.startsWith('text'))![0]}.attn_probs`;
    let seen = 0;
    const handle = sig.get(sitePath).registerForwardHook((_m, _x, p) => {
      const d = (p as tf.Tensor).dataSync();
      seen = d.length;
      expect(Math.max(...d)).toBeLessThan(1);
      // Causal text tower: the masked (future) keys' weights are exactly 0, the others positive.
      expect(Math.min(...d)).toBe(0);
      expect(d.filter((x) => x === 0).length).toBe((d.length / 256) * ((16 * 15) / 2));
      return tf.zerosLike(p as tf.Tensor);
    });
    const hooked = feats(sig);
    handle.remove();
    expect(seen).toBe(tokens.shape[0] * (sig.get(sitePath.replace('.attn_probs', '')) as MultiHeadAttention).numHeads * 16 * 16);
    expect(relErr(ref.text, hooked.text)).toBeGreaterThan(1e-3);
    expect(relErr(ref.text, feats(sig).text)).toBe(0);
    tf.dispose([images, tokens]);
    for (const m of [soft, sig, lm, again.model]) m.dispose();
  });
});
