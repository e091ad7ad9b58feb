/**
 * Sigmoid attention's stabilisers (QK-norm, hybrid-norm) and the switch of a trained softmax model:
 * the QK-norm forward against a by-hand computation, the norms read back from the shapes alone, save/load,
 * ORT parity ≤ 1e-4, and `switchToSigmoid` keeping every weight; the same for the MCi attention stages
 * (QK-norm in the MHSA, hybrid-norm `attn_out_norm` in the AttentionBlock), with reparameterisation and
 * gradients reaching the new norms.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { LayerNorm } from '../../src/base/layers/layer-norm.js';
import { MHSA } from '../../src/base/layers/mhsa.js';
import { MultiHeadAttention } from '../../src/base/layers/multi-head-attention.js';
import { CLIP } from '../../src/base/model/clip.js';
import { mciStages, textLayers, type ClipConfig } from '../../src/base/model/configs.js';
import { AttentionBlock } from '../../src/base/layers/attention-block.js';
import { reparameterize } from '../../src/base/model/reparameterize.js';
import { ATTN_LAYER_SCALE_INIT, configFromStateDict } from '../../src/base/model/config-inference.js';
import { LayerScale } from '../../src/base/layers/layer-scale.js';
import { exportStateDict } from '../../src/base/model/state-dict.js';
import { loadModel, saveModel } from '../../src/base/model/checkpoint.js';
import { buildOnnx, verifyOnnx } from '../../src/export/index.js';
import { modelCost } from '../../src/eval/cost.js';
import { SIGMOID_KERNEL, sigmoidBias, sigmoidKernel, switchToSigmoid, withSigmoidAttention } from '../../src/sigmoid-attn/index.js';
import { microConfig, microTokenRows } from '../micro-config.js';
import { relErr } from '../model/helpers.js';
import { perturb, rand } from '../export/helpers.js';

beforeAll(async () => {
  await initBackend({ backend: 'wasm', quiet: true });
});
const dir = mkdtempSync(join(tmpdir(), 'mclip-sigstab-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Norm affines away from the identity (perturb covers `q_norm`/`k_norm`; the hybrid norm is `pre_norm_mha.2`). */
function perturbAll(m: CLIP, seed: number): void {
  perturb(m, seed);
  const r = rand(seed + 100);
  for (const [name, p] of m.namedParams()) {
    if (!/pre_norm_mha\.(2\.(weight|bias)|3\.gamma)$/.test(name)) continue;
    const lo = name.endsWith('bias') ? -0.2 : 0.6;
    p.variable.assign(tf.tensor(Float32Array.from({ length: p.variable.size }, () => lo + 0.8 * r()), p.variable.shape));
  }
}

function stabilised(base: 'mobileclip_tiny' | 'mobileclip_tiny_base', seed: number): { cfg: ClipConfig; m: CLIP } {
  const c = microConfig(base);
  c.image = { ...c.image, imageSize: 64 };
  const cfg = withSigmoidAttention(c, { qkNorm: true, hybridNorm: true, layerScale: 1e-4 });
  const m = new CLIP(cfg, { seed });
  m.eval();
  perturbAll(m, seed);
  return { cfg, m };
}

function textFeatures(m: CLIP, tokens: tf.Tensor2D): Float32Array {
  return tf.tidy(() => m.encodeText(tokens).dataSync() as Float32Array).slice();
}

describe('QK-norm', () => {
  test('MultiHeadAttention with qkNorm = LN(q)·d^-1/2, LN(k) per head, then the kernel', () => {
    const mha = new MultiHeadAttention(8, 2, undefined, { kernel: SIGMOID_KERNEL, kernelParams: { bias: -1 }, qkNorm: true });
    const r = rand(3);
    for (const [, p] of mha.namedParams()) p.variable.assign(tf.tensor(Float32Array.from({ length: p.variable.size }, () => 0.2 + r()), p.variable.shape));
    const x = tf.tensor3d(Float32Array.from({ length: 2 * 5 * 8 }, () => r() * 2 - 1), [2, 5, 8]);
    const got = mha.call(x) as tf.Tensor;
    const want = tf.tidy(() => {
      const qkv = mha.qkvProj.call(x).reshape([2, 5, 3, 2, 4]).transpose([2, 0, 3, 1, 4]);
      const [q, k, v] = tf.unstack(qkv) as tf.Tensor4D[];
      const norms = mha.qkNorm!;
      const qn = norms.q.call(q).mul(4 ** -0.5) as tf.Tensor4D;
      const kn = norms.k.call(k) as tf.Tensor4D;
      const o = sigmoidKernel.apply(qn, kn, v, null, (p) => p, { params: { bias: -1 } });
      return mha.outProj.call(o.transpose([0, 2, 1, 3]).reshape([2, 5, 8]));
    });
    expect(mha.qkNorm!.q).toBeInstanceOf(LayerNorm);
    expect(relErr(want.dataSync(), got.dataSync())).toBeLessThan(1e-6);
    tf.dispose([x, got, want]);
    mha.dispose();
  });
});

describe('a stabilised sigmoid model (QK-norm + hybrid-norm + LayerScale)', () => {
  test('the norms and the LayerScale come back from the shapes; saves and loads; ORT parity ≤ 1e-4 (mct and causal base)', async () => {
    for (const [base, seed] of [['mobileclip_tiny', 41], ['mobileclip_tiny_base', 42]] as const) {
      const { cfg, m } = stabilised(base, seed);
      const layer = textLayers(cfg.text).find((l) => l.mixer === 'attention');
      expect(layer).toMatchObject({ qkNorm: true, attnOutNorm: true, attnLayerScale: 1e-4, attention: SIGMOID_KERNEL });
      expect([...m.namedModules()].filter(([p, x]) => p.startsWith('text_encoder') && x instanceof LayerScale).length).toBe(1);
      const sd = exportStateDict(m);
      // With no stored config, the shapes alone say where the norms are (the kernel then defaults to softmax).
      const bare = configFromStateDict(null, sd, 'stab');
      expect(textLayers(bare.text).filter((l) => l.mixer === 'attention').every((l) => l.qkNorm === true && l.attnOutNorm === true && l.attnLayerScale === ATTN_LAYER_SCALE_INIT)).toBe(true);
      expect(configFromStateDict(cfg, sd, 'stab')).toEqual(cfg);

      const tokens = microTokenRows();
      const ref = textFeatures(m, tokens);
      const file = join(dir, `${base}.safetensors`);
      saveModel(m, file);
      const loaded = await loadModel(file);
      loaded.model.eval();
      expect(loaded.config).toEqual(cfg);
      expect(relErr(ref, textFeatures(loaded.model, tokens))).toBeLessThan(1e-6);

      const bytes = buildOnnx(m, { tower: 'both' });
      const r = await verifyOnnx(m, bytes, { tower: 'both', imageSize: [64, 64], tokensDtype: 'int64', batch: 2, tolerance: 1e-4, seed: 1 });
      expect(r.relDiff.text_features).toBeLessThanOrEqual(1e-4);
      expect(r.relDiff.image_features).toBeLessThanOrEqual(1e-4);
      // Counting works with the norms in place (LayerNorms carry no MACs); one attention record per layer.
      const cost = modelCost(m);
      expect(cost.records.filter((x) => x.kind === 'attention').length).toBeGreaterThan(0);
      tokens.dispose();
      m.dispose();
      loaded.model.dispose();
    }
  });
});

describe('switchToSigmoid', () => {
  test('keeps every weight, records kernel and bias, adds identity norms; the function changes', () => {
    const soft = new CLIP(microConfig(), { seed: 5 });
    soft.eval();
    perturb(soft, 5);
    const tokens = microTokenRows();
    const plain = switchToSigmoid(soft);
    const stab = switchToSigmoid(soft, { qkNorm: true, hybridNorm: true, image: false });
    const path = 'text_encoder.transformer.1.pre_norm_mha.1';
    for (const m of [plain, stab]) {
      const a = m.get(path) as MultiHeadAttention;
      expect(a.kernelName).toBe(SIGMOID_KERNEL);
      expect(a.kernelParams.bias).toBeCloseTo(sigmoidBias(microConfig().text.contextLength), 6);
      expect(Array.from(a.qkvProj.weight.dataSync())).toEqual(Array.from((soft.get(path) as MultiHeadAttention).qkvProj.weight.dataSync()));
      expect(m.training).toBe(false);
    }
    expect(stab.get('text_encoder.transformer.1.pre_norm_mha.2')).toBeInstanceOf(LayerNorm);
    expect(Array.from(stab.get(`${path}.q_norm`).namedParams().find(([n]) => n === 'weight')![1].variable.dataSync()).every((w) => w === 1)).toBe(true);
    const mhsa = [...stab.namedModules()].map(([, x]) => x).find((x): x is MHSA => x instanceof MHSA);
    expect(mhsa?.kernelName).toBe('softmax');
    expect(relErr(textFeatures(soft, tokens), textFeatures(plain, tokens))).toBeGreaterThan(1e-3);
    tokens.dispose();
    for (const m of [soft, plain, stab]) m.dispose();
  });
});

/** The micro MCi stages at 64 px (stage 4: 2×2 tokens), sigmoid in the image tower only, with the stabilisers asked for. */
function mciStabilised(seed: number, opts: { qkNorm?: boolean; hybridNorm?: boolean }): { cfg: ClipConfig; m: CLIP } {
  const c = microConfig();
  c.image = { ...c.image, imageSize: 64 };
  const cfg = withSigmoidAttention(c, { text: false, ...opts });
  const m = new CLIP(cfg, { seed });
  m.eval();
  perturb(m, seed); // covers q_norm / k_norm / attn_out_norm (weights 0.6–1.4, biases ±0.2) and the layer scales
  return { cfg, m };
}

function images(seed: number, size = 64): tf.Tensor4D {
  const r = rand(seed);
  return tf.tensor4d(Float32Array.from({ length: 2 * size * size * 3 }, () => r()), [2, size, size, 3]);
}

function imageFeatures(m: CLIP, x: tf.Tensor4D): Float32Array {
  return tf.tidy(() => m.encodeImage(x).dataSync() as Float32Array).slice();
}

const MCI_BLOCK = 'image_encoder.model.network.7.0';

describe('MCi attention stages: QK-norm and hybrid-norm', () => {
  test('MHSA with qkNorm = LN(q)·d^-1/2, LN(k) per head; AttentionBlock with attnOutNorm = x + γ₁ ⊙ LN(MHSA(BN(x))) + γ₂ ⊙ ConvFFN', () => {
    const block = new AttentionBlock(8, { headDim: 4, kernel: SIGMOID_KERNEL, kernelParams: { bias: -1 }, qkNorm: true, attnOutNorm: true, layerScaleInit: 0.5 });
    block.eval();
    perturb(block, 9);
    const r = rand(4);
    const x = tf.tensor4d(Float32Array.from({ length: 2 * 3 * 3 * 8 }, () => r() * 2 - 1), [2, 3, 3, 8]);
    const got = block.call(x) as tf.Tensor;
    const want = tf.tidy(() => {
      const mh = block.tokenMixer;
      const t = block.norm.call(x).reshape([2, 9, 8]);
      const qkv = mh.qkv.call(t).reshape([2, 9, 3, 2, 4]).transpose([2, 0, 3, 1, 4]);
      const [q, k, v] = tf.unstack(qkv) as tf.Tensor4D[];
      const norms = mh.qkNorm!;
      const qn = norms.q.call(q).mul(4 ** -0.5) as tf.Tensor4D;
      const kn = norms.k.call(k) as tf.Tensor4D;
      const o = sigmoidKernel.apply(qn, kn, v, null, (p) => p, { params: { bias: -1 } });
      const a = block.attnOutNorm!.call(mh.proj.call(o.transpose([0, 2, 1, 3]).reshape([2, 9, 8]))).reshape([2, 3, 3, 8]);
      const y = x.add(a.mul(block.namedParams().find(([n]) => n === 'layer_scale_1')![1].variable));
      return y.add(block.convffn.scaledForward(y, block.namedParams().find(([n]) => n === 'layer_scale_2')![1].variable as tf.Tensor1D));
    });
    expect(block.tokenMixer.qkNorm!.q.dim).toBe(4);
    expect(block.attnOutNorm!.dim).toBe(8);
    expect(relErr(want.dataSync(), got.dataSync())).toBeLessThan(1e-6);
    tf.dispose([x, got, want]);
    block.dispose();
  });

  test('config from the shapes, save/load equal outputs, reparameterised = unfused, ORT parity ≤ 1e-4 (each stabiliser and both)', async () => {
    const cases = [
      { qkNorm: true, hybridNorm: false },
      { qkNorm: false, hybridNorm: true },
      { qkNorm: true, hybridNorm: true },
    ];
    for (const [i, opts] of cases.entries()) {
      const { cfg, m } = mciStabilised(60 + i, opts);
      if (cfg.image.kind !== 'mci') throw new Error('expected MCi');
      const stage = mciStages(cfg.image).find((st) => st.mixer === 'attention');
      expect(stage).toMatchObject({ attention: SIGMOID_KERNEL, ...(opts.qkNorm ? { qkNorm: true } : {}), ...(opts.hybridNorm ? { attnOutNorm: true } : {}) });
      const block = m.get(MCI_BLOCK) as AttentionBlock;
      expect(block.tokenMixer.qkNorm !== null).toBe(opts.qkNorm);
      expect(block.attnOutNorm !== null).toBe(opts.hybridNorm);
      const sd = exportStateDict(m);
      const bare = configFromStateDict(null, sd, 'stab');
      if (bare.image.kind !== 'mci') throw new Error('expected MCi');
      const bareStage = mciStages(bare.image).find((st) => st.mixer === 'attention');
      expect(bareStage?.qkNorm === true).toBe(opts.qkNorm);
      expect(bareStage?.attnOutNorm === true).toBe(opts.hybridNorm);
      expect(configFromStateDict(cfg, sd, 'stab')).toEqual(cfg);

      const x = images(70 + i);
      const ref = imageFeatures(m, x);
      const file = join(dir, `mci-${i}.safetensors`);
      saveModel(m, file);
      const loaded = await loadModel(file);
      loaded.model.eval();
      expect(loaded.config).toEqual(cfg);
      expect(relErr(ref, imageFeatures(loaded.model, x))).toBeLessThan(1e-6);

      reparameterize(m);
      const fused = imageFeatures(m, x);
      expect(relErr(ref, fused)).toBeLessThan(1e-5);
      const fusedFile = join(dir, `mci-${i}-fused.safetensors`);
      saveModel(m, fusedFile);
      const back = await loadModel(fusedFile);
      back.model.eval();
      expect(back.storedFused).toBe(true);
      expect(relErr(fused, imageFeatures(back.model, x))).toBeLessThan(1e-6);

      const bytes = buildOnnx(m, { tower: 'image' });
      const r = await verifyOnnx(m, bytes, { tower: 'image', imageSize: [64, 64], tokensDtype: 'int64', batch: 2, tolerance: 1e-4, seed: 3 });
      expect(r.relDiff.image_features).toBeLessThanOrEqual(1e-4);
      x.dispose();
      for (const mm of [m, loaded.model, back.model]) mm.dispose();
    }
  });

  test('gradients reach q_norm, k_norm and attn_out_norm (finite, non-zero)', () => {
    const { m } = mciStabilised(80, { qkNorm: true, hybridNorm: true });
    const names = ['token_mixer.q_norm.weight', 'token_mixer.k_norm.weight', 'attn_out_norm.weight', 'attn_out_norm.bias'].map((n) => `${MCI_BLOCK}.${n}`);
    const params = new Map(m.namedParams());
    const vars = names.map((n) => {
      const p = params.get(n);
      if (!p) throw new Error(`no parameter ${n}`);
      return p.variable;
    });
    const x = images(81);
    const w = tf.tensor2d(Float32Array.from({ length: 2 * 64 }, (_, j) => Math.sin(j)), [2, 64]);
    const { value, grads } = tf.variableGrads(() => m.encodeImage(x).mul(w).sum() as tf.Scalar, vars);
    expect(Number.isFinite(value.dataSync()[0])).toBe(true);
    for (const [k, v] of vars.entries()) {
      const g = grads[v.name].dataSync();
      expect(g.every((e) => Number.isFinite(e)), names[k]).toBe(true);
      expect(Math.max(...Array.from(g, Math.abs)), names[k]).toBeGreaterThan(1e-8);
    }
    tf.dispose([x, w, value, ...Object.values(grads)]);
    m.dispose();
  });

  test('switchToSigmoid on MCi: every weight kept, the new norms start as the identity affine, the kernel and bias recorded', () => {
    const c = microConfig();
    c.image = { ...c.image, imageSize: 64 };
    const soft = new CLIP(c, { seed: 90 });
    soft.eval();
    perturb(soft, 90);
    const sig = switchToSigmoid(soft, { text: false, qkNorm: true, hybridNorm: true });
    const block = sig.get(MCI_BLOCK) as AttentionBlock;
    expect(block.tokenMixer.kernelName).toBe(SIGMOID_KERNEL);
    expect(block.tokenMixer.kernelParams.bias).toBeCloseTo(sigmoidBias(4), 6); // 64 px: stage 4 is 2×2
    const old = new Map(soft.namedParams());
    const added: string[] = [];
    for (const [name, p] of sig.namedParams()) {
      const o = old.get(name);
      if (o) {
        expect(Array.from(p.variable.dataSync()), name).toEqual(Array.from(o.variable.dataSync()));
        continue;
      }
      added.push(name);
      expect(Array.from(p.variable.dataSync()).every((v) => v === (name.endsWith('weight') ? 1 : 0)), name).toBe(true);
    }
    expect(added.sort()).toEqual(['attn_out_norm.bias', 'attn_out_norm.weight', 'token_mixer.k_norm.bias', 'token_mixer.k_norm.weight', 'token_mixer.q_norm.bias', 'token_mixer.q_norm.weight'].map((n) => `${MCI_BLOCK}.${n}`));
    soft.dispose();
    sig.dispose();
  });
});
