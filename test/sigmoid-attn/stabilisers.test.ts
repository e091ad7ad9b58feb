/**
 * Sigmoid attention's stabilisers (QK-norm, hybrid-norm) and the switch of a trained softmax model:
 * the QK-norm forward against a by-hand computation, the norms read back from the shapes alone, save/load,
 * ORT parity ≤ 1e-4, and `switchToSigmoid` keeping every weight.
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
import { textLayers, type ClipConfig } from '../../src/base/model/configs.js';
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
