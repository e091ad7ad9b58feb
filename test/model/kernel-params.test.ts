/**
 * The core seam for attention-kernel parameters: a config's per-layer `attentionParams` reach every
 * attention module (`kernelParams`: text layers, MCi attention stages, ViT blocks), the kernel receives them
 * with the forward context, config inference keeps them from the stored config, a checkpoint brings them
 * back, and an attention emitter receives them. A toy kernel: softmax(q·kᵀ·α + mask)·v.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { registerAttentionKernel, type AttentionCall } from '../../src/base/nn/attention.js';
import { MHSA } from '../../src/base/layers/mhsa.js';
import { MultiHeadAttention } from '../../src/base/layers/multi-head-attention.js';
import { CLIP } from '../../src/base/model/clip.js';
import { mciStages, textLayers, vitBlocks, type ClipConfig } from '../../src/base/model/configs.js';
import { configFromStateDict } from '../../src/base/model/config-inference.js';
import { exportStateDict } from '../../src/base/model/state-dict.js';
import { loadModel, saveModel } from '../../src/base/model/checkpoint.js';
import { TEXT_TOKENS } from '../../src/base/model/text-context.js';
import { ai } from '../../src/export/graph.js';
import { buildOnnx, registerAttentionEmitter } from '../../src/export/index.js';
import { microConfig, microTokenRows } from '../micro-config.js';

/** What the kernel saw: its parameters, and whether the context held the text state during the pass. */
const calls: { call: AttentionCall; text: boolean }[] = [];
registerAttentionKernel({
  name: 'scaled-softmax',
  apply: (q, k, v, mask, probs, call) =>
    tf.tidy(() => {
      if (call) calls.push({ call, text: call.ctx?.has(TEXT_TOKENS) ?? false });
      let logits = tf.matMul(q, k, false, true).mul(call?.params.alpha ?? 1);
      if (mask) logits = logits.add(mask);
      return tf.matMul(probs(tf.softmax(logits) as tf.Tensor4D), v) as tf.Tensor4D;
    }),
});
const emitted: number[] = [];
registerAttentionEmitter('scaled-softmax', (em, a, name) => {
  emitted.push(a.params.alpha ?? Number.NaN);
  const logits = em.g.node('Mul', [em.g.node('MatMul', [a.q, a.kT]), em.g.scalarF32(a.params.alpha ?? 1)]);
  const masked = a.mask ? em.g.node('Add', [logits, a.mask]) : logits;
  return em.g.node('MatMul', [em.g.node('Softmax', [masked], { axis: ai(-1) }, `${name}.softmax`), a.v]);
});

const dir = mkdtempSync(join(tmpdir(), 'mclip-kparams-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

beforeAll(async () => {
  await initBackend({ backend: 'wasm', quiet: true, gradients: false });
});

/** The micro config with the toy kernel and α = 0.5 / 2 on every text layer / the MCi attention stage. */
function toyConfig(): ClipConfig {
  const cfg = microConfig();
  if (cfg.image.kind !== 'mci') throw new Error('mci expected');
  cfg.text.layers = textLayers(cfg.text).map((l) => (l.mixer === 'attention' ? { ...l, attention: 'scaled-softmax', attentionParams: { alpha: 0.5 } } : l));
  cfg.image.stages = mciStages(cfg.image).map((s) => (s.mixer === 'attention' ? { ...s, attention: 'scaled-softmax', attentionParams: { alpha: 2 } } : s));
  return cfg;
}

function attention(m: CLIP): [string, MHSA | MultiHeadAttention][] {
  return [...m.namedModules()].filter((e): e is [string, MHSA | MultiHeadAttention] => e[1] instanceof MHSA || e[1] instanceof MultiHeadAttention);
}

describe('attention kernel parameters', () => {
  test('reach the modules and the kernel (with the forward context); a module without them gets {}', () => {
    const m = new CLIP(toyConfig(), { seed: 1 });
    m.eval();
    const mods = attention(m);
    expect(mods.map(([p, a]) => [p.split('.')[0], a.kernelName, a.kernelParams])).toEqual([
      ['image_encoder', 'scaled-softmax', { alpha: 2 }],
      ['text_encoder', 'scaled-softmax', { alpha: 0.5 }],
    ]);
    expect(new MultiHeadAttention(8, 2).kernelParams).toEqual({});
    calls.length = 0;
    const tokens = microTokenRows();
    const y = m.encodeText(tokens);
    expect(calls.length).toBe(1);
    expect(calls[0].call.params).toEqual({ alpha: 0.5 });
    expect(calls[0].text).toBe(true);
    tf.dispose([y, tokens]);
    m.dispose();
  });

  test('ViT blocks take them from `blocks`', () => {
    const cfg = microConfig('mobileclip_tiny_base');
    cfg.image = { kind: 'vit', name: 'vit_custom', imageSize: 64, embedDim: 64, layers: 2, heads: 1, posGrid: 4 };
    cfg.image.blocks = vitBlocks(cfg.image).map((b, i) => ({ ...b, attention: 'scaled-softmax', attentionParams: { alpha: i + 1 } }));
    const m = new CLIP(cfg, { seed: 2 });
    expect(attention(m).filter(([p]) => p.startsWith('image')).map(([, a]) => a.kernelParams.alpha)).toEqual([1, 2]);
    m.dispose();
  });

  test('config inference keeps them from the stored config; a checkpoint brings them back; emitters receive them', async () => {
    const cfg = toyConfig();
    const m = new CLIP(cfg, { seed: 3 });
    m.eval();
    const sd = exportStateDict(m);
    expect(configFromStateDict(cfg, sd, 'toy')).toEqual(cfg);
    // Without the stored config the shapes say softmax and no parameters.
    const bare = configFromStateDict(null, sd, 'toy');
    expect(JSON.stringify(bare)).not.toContain('alpha');
    const file = join(dir, 'toy.safetensors');
    saveModel(m, file);
    const loaded = await loadModel(file);
    expect(loaded.config).toEqual(cfg);
    expect(attention(loaded.model).map(([, a]) => a.kernelParams)).toEqual([{ alpha: 2 }, { alpha: 0.5 }]);
    emitted.length = 0;
    buildOnnx(loaded.model, { tower: 'both' });
    expect(emitted.sort()).toEqual([0.5, 2]);
    m.dispose();
    loaded.model.dispose();
  });
});
