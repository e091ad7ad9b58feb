/**
 * Sigmoid attention exported to ONNX (onnxruntime-node parity ≤ 1e-4, recorded bias and the −ln N
 * fallback) and counted (the kernel's MACs).
 */
import { beforeAll, describe, expect, test } from 'vitest';
import { initBackend } from '../../src/base/backend/index.js';
import { MHSA } from '../../src/base/layers/mhsa.js';
import { MultiHeadAttention } from '../../src/base/layers/multi-head-attention.js';
import { CLIP } from '../../src/base/model/clip.js';
import type { ClipConfig } from '../../src/base/model/configs.js';
import { buildOnnx, decodeModel, verifyOnnx } from '../../src/export/index.js';
import { modelCost } from '../../src/eval/cost.js';
import { SIGMOID_KERNEL, sigmoidAttentionMacs, withSigmoidAttention } from '../../src/sigmoid-attn/index.js';
import { microConfig } from '../micro-config.js';
import { perturb } from '../export/helpers.js';

beforeAll(async () => {
  await initBackend({ backend: 'wasm', quiet: true, gradients: false });
});

function sigmoidModel(base: 'mobileclip_tiny' | 'mobileclip_tiny_base', seed: number): CLIP {
  const cfg: ClipConfig = microConfig(base);
  cfg.image = { ...cfg.image, imageSize: 64 }; // 2×2 stage-4 tokens
  const m = new CLIP(withSigmoidAttention(cfg), { seed });
  m.eval();
  perturb(m, seed);
  return m;
}

function attentionModules(m: CLIP): (MHSA | MultiHeadAttention)[] {
  return [...m.namedModules()].map(([, x]) => x).filter((x): x is MHSA | MultiHeadAttention => x instanceof MHSA || x instanceof MultiHeadAttention);
}

async function parity(m: CLIP): Promise<Record<string, number>> {
  const bytes = buildOnnx(m, { tower: 'both' });
  const r = await verifyOnnx(m, bytes, { tower: 'both', imageSize: [64, 64], tokensDtype: 'int64', batch: 2, tolerance: 1e-4, seed: 1 });
  return r.relDiff;
}

describe('ONNX export of sigmoid attention', () => {
  test('mct text + MCi attention stage: ORT parity ≤ 1e-4; sigmoid nodes, no softmax', async () => {
    const m = sigmoidModel('mobileclip_tiny', 31);
    expect(attentionModules(m).every((a) => a.kernelName === SIGMOID_KERNEL)).toBe(true);
    const rel = await parity(m);
    expect(rel.image_features).toBeLessThanOrEqual(1e-4);
    expect(rel.text_features).toBeLessThanOrEqual(1e-4);
    const nodes = decodeModel(buildOnnx(m, { tower: 'both' })).graph.node;
    expect(nodes.some((n) => n.opType === 'Softmax')).toBe(false);
    expect(nodes.filter((n) => n.opType === 'Sigmoid' && n.output.some((o) => o.includes('.sigmoid'))).length).toBe(attentionModules(m).length);
    m.dispose();
  });

  test('causal text (base tower): ORT parity ≤ 1e-4; without a recorded bias, −ln N from the graph', async () => {
    const m = sigmoidModel('mobileclip_tiny_base', 32);
    expect(attentionModules(m).some((a) => a instanceof MultiHeadAttention && a.causal)).toBe(true);
    let rel = await parity(m);
    expect(rel.text_features).toBeLessThanOrEqual(1e-4);
    expect(rel.image_features).toBeLessThanOrEqual(1e-4);
    const dynamic = (x: CLIP) => decodeModel(buildOnnx(x, { tower: 'both' })).graph.node.filter((n) => n.output.some((o) => o.includes('.sigmoid_bias'))).length;
    expect(dynamic(m)).toBe(0);
    for (const a of attentionModules(m)) a.kernelParams = {};
    expect(dynamic(m)).toBe(attentionModules(m).length);
    rel = await parity(m);
    expect(rel.text_features).toBeLessThanOrEqual(1e-4);
    expect(rel.image_features).toBeLessThanOrEqual(1e-4);
    m.dispose();
  });
});

describe('MACs of sigmoid attention', () => {
  test('each attention layer is counted by the sigmoid kernel count', () => {
    const m = sigmoidModel('mobileclip_tiny', 33);
    const att = modelCost(m).records.filter((r) => r.kind === 'attention');
    expect(att.length).toBe(attentionModules(m).length);
    for (const r of att) {
      const a = m.get(r.name) as MHSA | MultiHeadAttention;
      expect(r.macs).toBe(sigmoidAttentionMacs(a.numHeads, r.tokens, a.headDim));
    }
    expect(att.find((r) => r.tower === 'image')!.tokens).toBe(4);
    m.dispose();
  });
});
