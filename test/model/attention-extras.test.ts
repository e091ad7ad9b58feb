/**
 * The core's optional parts of a transformer layer, with the built-in softmax kernel (no plug-in): QK-norm
 * (`pre_norm_mha.1.{q,k}_norm`), a norm on the attention output (`pre_norm_mha.2`, hybrid-norm) and LayerScale
 * on the attention residual (`pre_norm_mha.3.gamma`). Config inference finds them from the keys alone, a
 * checkpoint loads back, the forward is x + γ ⊙ LN′(MHA(LN(x))), and the export matches in onnxruntime.
 */
import { beforeAll, describe, expect, test } from 'vitest';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { TransformerEncoder } from '../../src/base/layers/transformer-encoder.js';
import { LayerNorm } from '../../src/base/layers/layer-norm.js';
import { LayerScale } from '../../src/base/layers/layer-scale.js';
import { CLIP } from '../../src/base/model/clip.js';
import { textLayers, vitBlocks, type ClipConfig } from '../../src/base/model/configs.js';
import { ATTN_LAYER_SCALE_INIT, configFromStateDict } from '../../src/base/model/config-inference.js';
import { exportStateDict } from '../../src/base/model/state-dict.js';
import { buildOnnx, verifyOnnx } from '../../src/export/index.js';
import { microConfig } from '../micro-config.js';
import { perturb, rand } from '../export/helpers.js';
import { relErr } from './helpers.js';

beforeAll(async () => {
  await initBackend({ backend: 'wasm', quiet: true, gradients: false });
});

function randomize(m: CLIP | TransformerEncoder, seed: number): void {
  const r = rand(seed);
  for (const [name, p] of m.namedParams()) {
    if (!/(q_norm|k_norm|pre_norm_mha\.2|pre_norm_mha\.3)\./.test(name)) continue;
    p.variable.assign(tf.tensor(Float32Array.from({ length: p.variable.size }, () => (name.endsWith('bias') ? -0.2 : 0.5) + 0.6 * r()), p.variable.shape));
  }
}

function withExtras(base: 'mobileclip_tiny' | 'mobileclip_tiny_base'): ClipConfig {
  const cfg = microConfig(base);
  cfg.text.layers = textLayers(cfg.text).map((l) => (l.mixer === 'attention' ? { ...l, qkNorm: true, attnOutNorm: true, attnLayerScale: 0.1 } : l));
  return cfg;
}

describe('optional parts of a transformer layer', () => {
  test('TransformerEncoder: x + γ ⊙ LN′(MHA(LN(x))), then the FFN', () => {
    const enc = new TransformerEncoder(8, 2, 16, undefined, { qkNorm: true, attnOutNorm: true, attnLayerScale: 0.1 });
    randomize(enc, 1);
    const mha = enc.preNormMha;
    expect(mha.at(2)).toBeInstanceOf(LayerNorm);
    expect(mha.at(3)).toBeInstanceOf(LayerScale);
    const x = tf.randomNormal([2, 5, 8], 0, 1, 'float32', 3);
    const got = enc.call(x);
    const want = tf.tidy(() => {
      const a = mha.at(3).call(mha.at(2).call(enc.attn.call(mha.at(0).call(x))));
      const y = x.add(a);
      return y.add(enc.preNormFfn.call(y));
    });
    expect(relErr(want.dataSync(), got.dataSync())).toBeLessThan(1e-6);
    tf.dispose([x, got, want]);
    enc.dispose();
  });

  test('config inference finds them from the keys (text and ViT); the stored config keeps the LayerScale init', () => {
    const cfg = withExtras('mobileclip_tiny');
    const m = new CLIP(cfg, { seed: 2 });
    const sd = exportStateDict(m);
    expect(configFromStateDict(cfg, sd, 'x')).toEqual(cfg);
    const bare = textLayers(configFromStateDict(null, sd, 'x').text).filter((l) => l.mixer === 'attention');
    expect(bare.every((l) => l.qkNorm === true && l.attnOutNorm === true && l.attnLayerScale === ATTN_LAYER_SCALE_INIT)).toBe(true);
    m.dispose();

    const v = microConfig('mobileclip_tiny_base');
    v.image = { kind: 'vit', name: 'vit_custom', imageSize: 64, embedDim: 64, layers: 2, heads: 1, posGrid: 4 };
    v.image.blocks = vitBlocks(v.image).map((b, i) => (i === 1 ? { ...b, qkNorm: true, attnOutNorm: true } : b));
    const vm = new CLIP(v, { seed: 3 });
    const back = configFromStateDict(null, exportStateDict(vm), 'vit');
    expect(back.image.kind === 'vit' && back.image.blocks?.map((b) => [b.qkNorm ?? false, b.attnOutNorm ?? false])).toEqual([
      [false, false],
      [true, true],
    ]);
    vm.dispose();
  });

  test('ORT parity ≤ 1e-4 (mct and causal base text)', async () => {
    for (const base of ['mobileclip_tiny', 'mobileclip_tiny_base'] as const) {
      const m = new CLIP(withExtras(base), { seed: 4 });
      m.eval();
      perturb(m, 4);
      randomize(m, 5);
      const r = await verifyOnnx(m, buildOnnx(m, { tower: 'text' }), { tower: 'text', imageSize: [32, 32], tokensDtype: 'int64', batch: 2, tolerance: 1e-4, seed: 1 });
      expect(r.relDiff.text_features).toBeLessThanOrEqual(1e-4);
      m.dispose();
    }
  });
});
