/**
 * The export and cost registries from a plug-in's side: a toy layer (ChannelScale) and a toy attention
 * kernel ('relu-attn') registered here, put into micro models, exported to ONNX (onnxruntime parity with
 * tfjs) and counted.
 */
import { beforeAll, describe, expect, test } from 'vitest';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { Module } from '../../src/base/nn/module.js';
import { Initializer } from '../../src/base/nn/init.js';
import { registerAttentionKernel, type AttentionKernel } from '../../src/base/nn/attention.js';
import { MHSA } from '../../src/base/layers/mhsa.js';
import { MultiHeadAttention } from '../../src/base/layers/multi-head-attention.js';
import { TransformerEncoder } from '../../src/base/layers/transformer-encoder.js';
import { Dropout } from '../../src/base/layers/activations.js';
import { Conv2d } from '../../src/base/layers/conv2d.js';
import { CLIP } from '../../src/base/model/clip.js';
import type { ClipConfig } from '../../src/base/model/configs.js';
import { ai } from '../../src/export/graph.js';
import { MclipError } from '../../src/errors.js';
import { buildOnnx, decodeModel, emitterFor, f32, registerAttentionEmitter, registerEmitter, verifyOnnx } from '../../src/export/index.js';
import { modelCost, registerAttentionCost, registerCost, type MacRecord } from '../../src/eval/cost.js';
import { microConfig } from '../micro-config.js';
import { perturb } from './helpers.js';

// ---- the plug-in --------------------------------------------------------------------------------

/** y = x ⊙ s over the channel axis (last in TF.js: NHWC maps and [B, N, C] tokens alike). */
class ChannelScale extends Module {
  constructor(channels: number, seed: number) {
    super();
    this.addParam('scale', new Initializer(seed).normal([channels], 0.5).add(1));
  }

  get scale(): tf.Variable {
    return this.param('scale');
  }

  forward(x: tf.Tensor): tf.Tensor {
    return x.mul(this.scale);
  }
}

/** Exports (and counts) like its parent: no registration of its own. */
class ChannelScaleV2 extends ChannelScale {}

registerEmitter(ChannelScale, (em, m, x, name, layout) => {
  const c = m.scale.size;
  const dims = layout === '2d' ? [c, 1, 1] : layout === '1d' ? [c, 1] : [c];
  return em.g.node('Mul', [x, em.g.initF32(`${name}.scale`, f32(m.scale), dims)], {}, name);
});

registerCost(ChannelScale, (m, shape, { name, tower, batch }) => {
  const values = shape.reduce((a, b) => a * b, 1) / batch;
  return { name, tower, kind: 'other', macs: values, tokens: values / m.scale.size, scaling: 'tokens' };
});

/** relu(q·kᵀ + mask)·v / N (N keys); the mask's -inf become 0. */
const reluAttention: AttentionKernel = {
  name: 'relu-attn',
  apply: (q, k, v, mask, probs) =>
    tf.tidy(() => {
      let logits = tf.matMul(q, k, false, true);
      if (mask) logits = logits.add(mask);
      const p = tf.relu(logits).div(k.shape[2]) as tf.Tensor4D;
      return tf.matMul(probs(p), v) as tf.Tensor4D;
    }),
};
registerAttentionKernel(reluAttention);

registerAttentionEmitter('relu-attn', (em, a, name) => {
  let logits = em.g.node('MatMul', [a.q, a.kT], {}, `${name}.logits`);
  if (a.mask) logits = em.g.node('Add', [logits, a.mask]);
  const n = em.g.node('Cast', [em.g.node('Shape', [a.kT], { start: ai(3), end: ai(4) })], { to: ai(1) });
  const p = em.g.node('Div', [em.g.node('Relu', [logits]), n], {}, `${name}.relu_attn`);
  return em.g.node('MatMul', [p, a.v]);
});

/** QKᵀ and A·V as softmax, plus the division by N. */
const reluAttnMacs = (heads: number, n: number, d: number) => 2 * heads * n * n * d + heads * n * n;
registerAttentionCost('relu-attn', ({ heads, tokens, headDim }) => reluAttnMacs(heads, tokens, headDim));

/** A kernel with no ONNX form and no MAC count. */
registerAttentionKernel({ name: 'no-onnx', apply: reluAttention.apply });

// ---- tests --------------------------------------------------------------------------------------

beforeAll(async () => {
  await initBackend({ backend: 'wasm', quiet: true, gradients: false });
});

function microModel(cfg: ClipConfig, seed: number): CLIP {
  const m = new CLIP(cfg, { seed });
  m.eval();
  perturb(m, seed);
  return m;
}

/** Path of the first TransformerEncoder of the text tower. */
function firstEncoder(m: CLIP): string {
  const i = m.textEncoder.transformer.children().findIndex(([, b]) => b instanceof TransformerEncoder);
  expect(i).toBeGreaterThanOrEqual(0);
  return `text_encoder.transformer.${i}`;
}

async function parity(m: CLIP, tower: 'image' | 'text' | 'both'): Promise<Record<string, number>> {
  const bytes = buildOnnx(m, { tower });
  const imageSize: [number, number] = [m.cfg.image.imageSize, m.cfg.image.imageSize];
  const r = await verifyOnnx(m, bytes, { tower, imageSize, tokensDtype: 'int64', batch: 2, tolerance: 1e-4, seed: 1 });
  return r.relDiff;
}

function records(m: CLIP, pred: (r: MacRecord) => boolean): MacRecord[] {
  return modelCost(m).records.filter(pred);
}

describe('a plug-in layer (ChannelScale)', () => {
  test('in an NCHW stage and among text tokens: ONNX matches tfjs; its MACs are recorded', async () => {
    const m = microModel(microConfig(), 21);
    // Stage 1 (8 channels at 8×8 for a 32×32 input) becomes a channel scale; the subclass uses the parent's emitter and count.
    m.replace('image_encoder.model.network.0.0', new ChannelScaleV2(8, 1));
    const enc = firstEncoder(m);
    const drop = `${enc}.pre_norm_ffn.3`;
    expect(m.get(drop)).toBeInstanceOf(Dropout);
    const hidden = (m.get(enc) as TransformerEncoder).ffnDim;
    m.replace(drop, new ChannelScale(hidden, 2));
    expect(emitterFor(m.get('image_encoder.model.network.0.0'))).toBe(emitterFor(m.get(drop)));

    const rel = await parity(m, 'both');
    expect(rel.image_features).toBeLessThanOrEqual(1e-4);
    expect(rel.text_features).toBeLessThanOrEqual(1e-4);

    const mine = records(m, (r) => r.kind === 'other');
    const s = microConfig().text.contextLength;
    expect(mine).toEqual([
      { name: 'image_encoder.model.network.0.0', tower: 'image', kind: 'other', macs: 8 * 8 * 8, tokens: 64, scaling: 'tokens' },
      { name: drop, tower: 'text', kind: 'other', macs: s * hidden, tokens: s, scaling: 'tokens' },
    ]);
    m.dispose();
  });

  test('an unregistered layer class fails naming its path and class', () => {
    class Unknown extends Module {
      forward(x: tf.Tensor): tf.Tensor {
        return x;
      }
    }
    const m = microModel(microConfig(), 22);
    m.replace('image_encoder.model.network.0.0', new Unknown());
    expect(() => buildOnnx(m, { tower: 'image' })).toThrow(/no ONNX mapping for module 'image\.network\.0\.0' \(Unknown/);
    m.dispose();
  });
});

describe('a plug-in attention kernel (relu-attn)', () => {
  function useKernel(m: CLIP, kernel: string): string[] {
    const paths: string[] = [];
    for (const [p, mod] of m.namedModules()) {
      if (mod instanceof MHSA || mod instanceof MultiHeadAttention) {
        mod.kernelName = kernel;
        paths.push(p);
      }
    }
    return paths;
  }

  test('MCi MHSA and non-causal text attention: ORT parity ≤ 1e-4 and the kernel MACs', async () => {
    const cfg = microConfig();
    cfg.image = { ...cfg.image, imageSize: 64 }; // 2×2 stage-4 tokens
    const m = microModel(cfg, 23);
    const paths = useKernel(m, 'relu-attn');
    expect(paths.some((p) => p.startsWith('image_encoder'))).toBe(true);
    expect(paths.some((p) => p.startsWith('text_encoder'))).toBe(true);
    const rel = await parity(m, 'both');
    expect(rel.image_features).toBeLessThanOrEqual(1e-4);
    expect(rel.text_features).toBeLessThanOrEqual(1e-4);
    const ops = new Set(decodeModel(buildOnnx(m, { tower: 'both' })).graph.node.map((n) => n.opType));
    expect(ops.has('Softmax')).toBe(false);
    expect(ops.has('Relu')).toBe(true);

    const att = records(m, (r) => r.kind === 'attention');
    expect(att.map((r) => r.name).sort()).toEqual([...paths].sort());
    for (const r of att) {
      const mod = m.get(r.name);
      const heads = mod instanceof MHSA ? mod.numHeads : (mod as MultiHeadAttention).numHeads;
      const d = mod instanceof MHSA ? mod.headDim : (mod as MultiHeadAttention).headDim;
      expect(r.macs).toBe(reluAttnMacs(heads, r.tokens, d));
    }
    // MCi stage 4 at 64/32 = 2×2 tokens; text: every position.
    expect(att.find((r) => r.tower === 'image')!.tokens).toBe(4);
    expect(att.find((r) => r.tower === 'text')!.tokens).toBe(microConfig().text.contextLength);
    m.dispose();
  });

  test('causal text attention (base text tower): ORT parity ≤ 1e-4', async () => {
    const m = microModel(microConfig('mobileclip_tiny_base'), 24);
    const attn = m.get(`${firstEncoder(m)}.pre_norm_mha.1`) as MultiHeadAttention;
    expect(attn.causal).toBe(true);
    useKernel(m, 'relu-attn');
    const rel = await parity(m, 'text');
    expect(rel.text_features).toBeLessThanOrEqual(1e-4);
    m.dispose();
  });

  test('a kernel without an ONNX emitter / MAC count: one-line errors naming the kernel and the module', () => {
    const m = microModel(microConfig(), 25);
    const path = `${firstEncoder(m)}.pre_norm_mha.1`;
    (m.get(path) as MultiHeadAttention).kernelName = 'no-onnx';
    let err: unknown = null;
    try {
      buildOnnx(m, { tower: 'text' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MclipError);
    const msg = (err as MclipError).message;
    expect(msg).toContain(`${path.replace('text_encoder', 'text')} uses the attention kernel 'no-onnx'`);
    expect(msg).not.toContain('\n');
    expect(() => modelCost(m)).toThrow(new RegExp(`^cost: ${path.replace(/\./g, '\\.')} uses the attention kernel 'no-onnx', which has no MAC count[^\\n]*$`));
    m.dispose();
  });
});

describe('registration', () => {
  test('one emitter per class (re-registering the same function is a no-op); a conv among tokens fails by path', () => {
    const fn = (_em: unknown, _m: unknown, x: string) => x;
    class Twice extends Module {
      forward(x: tf.Tensor): tf.Tensor {
        return x;
      }
    }
    registerEmitter(Twice, fn);
    registerEmitter(Twice, fn);
    expect(() => registerEmitter(Twice, (_em, _m, x) => x)).toThrow(/already registered/);
    expect(() => registerAttentionEmitter('relu-attn', (_em, a) => a.v)).toThrow(/'relu-attn' is already registered/);

    const m = microModel(microConfig(), 26);
    m.replace(`${firstEncoder(m)}.pre_norm_ffn.3`, new Conv2d(4, 4, 1));
    expect(() => buildOnnx(m, { tower: 'text' })).toThrow(/pre_norm_ffn\.3: a channel-first layer on a \[B, N, C\] token sequence/);
    m.dispose();
  });
});
