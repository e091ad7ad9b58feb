/**
 * `mclip convert CKPT --attention sigmoid [--qk-norm] [--hybrid-norm] --out OUT`: a softmax checkpoint
 * switched to sigmoid attention (kernel and bias in the written config, every weight kept, the stabilisers
 * added), loadable with no --arch; usage errors for a wrong kernel, a non-safetensors output, stray flags.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initBackend } from '../../src/base/backend/index.js';
import { CLIP } from '../../src/base/model/clip.js';
import { loadModel, saveModel } from '../../src/base/model/checkpoint.js';
import { mciStages, textLayers } from '../../src/base/model/configs.js';
import { MultiHeadAttention } from '../../src/base/layers/multi-head-attention.js';
import { MHSA } from '../../src/base/layers/mhsa.js';
import { SIGMOID_KERNEL, sigmoidBias } from '../../src/sigmoid-attn/index.js';
import { microConfig } from '../micro-config.js';
import { expectOneLineError, show, tempDir } from '../cli/helpers.js';
import { runMain } from '../cli/in-process.js';

describe('mclip convert --attention sigmoid', () => {
  const tmp = tempDir('sigmoid-convert');
  afterAll(() => tmp.cleanup());
  const src = join(tmp.dir, 'soft.safetensors');
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true, gradients: false });
    const m = new CLIP(microConfig(), { seed: 7 });
    saveModel(m, src);
    m.dispose();
  });

  it('switches both towers, adds the stabilisers, keeps the weights; the result loads with no config given', async () => {
    const out = join(tmp.dir, 'sig.safetensors');
    const r = await runMain(['convert', src, '--attention', 'sigmoid', '--qk-norm', '--hybrid-norm', '--layer-scale', '1e-4', '--out', out, '--quiet']);
    expect(r.status, show(r)).toBe(0);
    expect(r.stdout).toContain('sigmoid attention (both; QK-norm, hybrid-norm, LayerScale 0.0001)');
    const before = await loadModel(src);
    const after = await loadModel(out);
    const layers = textLayers(after.config.text).filter((l) => l.mixer === 'attention');
    expect(layers.length).toBeGreaterThan(0);
    for (const l of layers) expect(l).toMatchObject({ attention: SIGMOID_KERNEL, qkNorm: true, attnOutNorm: true, attnLayerScale: 1e-4, attentionParams: { bias: sigmoidBias(16) } });
    if (after.config.image.kind !== 'mci') throw new Error('expected an MCi image tower');
    const stage = mciStages(after.config.image).find((st) => st.mixer === 'attention');
    expect(stage).toMatchObject({ attention: SIGMOID_KERNEL, qkNorm: true, attnOutNorm: true, attentionParams: { bias: 0 } }); // 32 px: stage 4 is 1×1, b = −ln 1
    const mods = [...after.model.namedModules()].filter(([, m]) => m instanceof MHSA || m instanceof MultiHeadAttention);
    expect(mods.every(([, m]) => (m as MHSA | MultiHeadAttention).kernelName === SIGMOID_KERNEL)).toBe(true);
    const old = new Map(before.model.namedParams());
    const added: string[] = [];
    for (const [name, p] of after.model.namedParams()) {
      const o = old.get(name);
      if (!o) {
        added.push(name);
        expect(name).toMatch(/((q_norm|k_norm|pre_norm_mha\.2|attn_out_norm)\.(weight|bias)|pre_norm_mha\.3\.gamma)$/);
        continue;
      }
      expect(Array.from(p.variable.dataSync()), name).toEqual(Array.from(o.variable.dataSync()));
    }
    expect(added.filter((n) => n.startsWith('image_encoder.')).sort()).toEqual(
      ['attn_out_norm.bias', 'attn_out_norm.weight', 'token_mixer.k_norm.bias', 'token_mixer.k_norm.weight', 'token_mixer.q_norm.bias', 'token_mixer.q_norm.weight'].map((n) => `image_encoder.model.network.7.0.${n}`),
    );
    before.model.dispose();
    after.model.dispose();
  });

  it('the switched checkpoint exports through the CLI (mclip export verifies in onnxruntime)', async () => {
    const sig = join(tmp.dir, 'sig-export.safetensors');
    expect((await runMain(['convert', src, '--attention', 'sigmoid', '--qk-norm', '--out', sig, '--quiet'])).status).toBe(0);
    const r = await runMain(['export', '--checkpoint', sig, '--out', join(tmp.dir, 'sig.onnx'), '--quiet']);
    expect(r.status, show(r)).toBe(0);
  });

  it('text only: the image tower keeps softmax', async () => {
    const out = join(tmp.dir, 'sig-text.safetensors');
    const r = await runMain(['convert', src, '--attention', 'sigmoid', '--towers', 'text', '--out', out, '--quiet']);
    expect(r.status, show(r)).toBe(0);
    const m = (await loadModel(out)).model;
    const kinds = [...m.namedModules()].filter(([, x]) => x instanceof MHSA || x instanceof MultiHeadAttention).map(([p, x]) => [p.split('.')[0], (x as MHSA | MultiHeadAttention).kernelName]);
    expect(kinds).toEqual([
      ['image_encoder', 'softmax'],
      ['text_encoder', SIGMOID_KERNEL],
    ]);
    m.dispose();
  });

  it('usage errors: an unknown kernel, a .pt output, --qk-norm without --attention, --dtype with it', async () => {
    expectOneLineError(expect, await runMain(['convert', src, '--attention', 'relu', '--out', join(tmp.dir, 'x.safetensors')]), /--attention must be one of sigmoid, got 'relu'/, 2);
    expectOneLineError(expect, await runMain(['convert', src, '--attention', 'sigmoid', '--out', join(tmp.dir, 'x.pt')]), /--out must name a \.safetensors file/, 2);
    expectOneLineError(expect, await runMain(['convert', src, '--to', 'pt', '--qk-norm', '--out', join(tmp.dir, 'x.pt')]), /--qk-norm needs --attention/, 2);
    expectOneLineError(expect, await runMain(['convert', src, '--attention', 'sigmoid', '--dtype', 'float16', '--out', join(tmp.dir, 'x.safetensors')]), /--dtype/, 2);
    expectOneLineError(expect, await runMain(['convert', src, '--out', join(tmp.dir, 'x.pt')]), /--to is required/, 2);
    expectOneLineError(expect, await runMain(['convert', src, '--attention', 'sigmoid', '--layer-scale', '-1', '--out', join(tmp.dir, 'x.safetensors')]), /--layer-scale must be a positive number/, 2);
  });
});
