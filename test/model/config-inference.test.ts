import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { loadTorchCheckpoint } from '../../src/base/io/torch-checkpoint.js';
import type { StateDict } from '../../src/base/io/tensor-data.js';
import { writeSafetensors } from '../../src/base/io/safetensors.js';
import { CLIP } from '../../src/base/model/clip.js';
import { configFromStateDict, compactConfig } from '../../src/base/model/config-inference.js';
import { fromOfficialJson, getConfig, mciStages, textLayers, vitBlocks, type ClipConfig } from '../../src/base/model/configs.js';
import { loadModel, saveModel } from '../../src/base/model/checkpoint.js';
import { expectedShapes, exportStateDict } from '../../src/base/model/state-dict.js';
import { reparameterize } from '../../src/base/model/reparameterize.js';
import { MclipError } from '../../src/errors.js';
import { describeFixtures, fixture } from '../paths.js';
import { readJson } from './helpers.js';
import { microConfig } from '../micro-config.js';

/** A state dict with the right shapes and no data (configFromStateDict reads shapes only). */
function shapesOnly(shapes: Iterable<[string, number[]]>): StateDict {
  const sd: StateDict = new Map();
  for (const [k, shape] of shapes) sd.set(k, { dtype: 'float32', shape, data: new Float32Array(0) });
  return sd;
}

function modelShapes(cfg: ClipConfig, fused: boolean): StateDict {
  const m = new CLIP(cfg, { inferenceMode: fused });
  const sd = shapesOnly(expectedShapes(m));
  m.dispose();
  return sd;
}

/** A small ViT config (the ViT-B structure at width 64), with a micro text tower. */
function microVit(): ClipConfig {
  const cfg = microConfig('mobileclip_tiny_base');
  cfg.image = { kind: 'vit', name: 'vit_custom', imageSize: 224, embedDim: 64, layers: 2, heads: 1, posGrid: 4 };
  cfg.text.nHeads = 1;
  return cfg;
}

beforeAll(async () => {
  await initBackend({ backend: 'wasm', quiet: true, gradients: false });
});

describeFixtures('configFromStateDict on the S0 fixture', () => {
  test('unfused (official .pt) and fused (official key list): the mobileclip_s0 structure, vocabulary from the file', async () => {
    const want = fromOfficialJson(readJson('mobileclip_s0', 'config.json'), 'mobileclip_s0');
    expect(want.text.vocabSize).toBe(1024);
    const sd = await loadTorchCheckpoint(fixture('mobileclip_s0', 'model_fp16.pt'));
    const fusedKeys = readJson<{ name: string; shape: number[] }[]>('mobileclip_s0', 'fused_state_dict_keys.json');
    const fused = shapesOnly(fusedKeys.map((k) => [k.name, k.shape]));
    for (const [what, d] of [['unfused', sd], ['fused', fused]] as const) {
      const cfg = configFromStateDict(null, d, what);
      expect(cfg, what).toEqual(want);
      expect(cfg.text.layers, 'shorthand, not per-layer').toBeUndefined();
      expect(cfg.image.kind === 'mci' && cfg.image.stages).toBeUndefined();
      // With the named config as base the result is the same.
      expect(configFromStateDict(getConfig('mobileclip_s0'), d, what)).toEqual(want);
    }
  });

  test('loadModel reads the official .pt with no config and no --arch', async () => {
    const before = tf.memory().numTensors;
    const { model, config, storedFused } = await loadModel(fixture('mobileclip_s0', 'model_fp16.pt'));
    expect(config.name).toBe('mobileclip_s0');
    expect(storedFused).toBe(false);
    model.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('configFromStateDict', () => {
  test('named tiny configs, unfused and fused, come back exactly (no base)', () => {
    for (const name of ['mobileclip_tiny', 'mobileclip_tiny_base']) {
      for (const fused of [false, true]) expect(configFromStateDict(null, modelShapes(getConfig(name), fused), name), `${name} fused=${fused}`).toEqual(getConfig(name));
    }
  });

  test('compactConfig leaves every named config in its shorthand form', () => {
    for (const name of ['mobileclip_s0', 'mobileclip_s1', 'mobileclip_s2', 'mobileclip_b', 'mobileclip_tiny']) expect(compactConfig(getConfig(name))).toEqual(getConfig(name));
  });

  test('heads: from base when they divide the inner width, else the official head widths (64 text/ViT, 32 MCi)', () => {
    const micro = microConfig(); // MCi attention 4 heads of 16, text 2 heads of 32
    const sd = modelShapes(micro, false);
    expect(configFromStateDict(micro, sd, 'micro')).toEqual(micro);
    const guessed = configFromStateDict(null, sd, 'micro');
    expect(guessed.image.kind === 'mci' && mciStages(guessed.image)[3]).toMatchObject({ heads: 2, headDim: 32 });
    expect(textLayers(guessed.text)[1]).toMatchObject({ mixer: 'attention', heads: 1, headDim: 64 });
    expect(guessed.image.imageSize).toBe(256);
    expect(guessed.text.causalMasking).toBe(false);
  });

  test('ViT image tower: layers, heads, FFN and grid from shapes; without base 224 px and causal text', () => {
    const cfg = microVit();
    const sd = modelShapes(cfg, false);
    const got = configFromStateDict(null, sd, 'vit');
    expect(got.image).toEqual(cfg.image);
    expect(got.text.causalMasking).toBe(true);
    expect(got.name).toBe('custom');
    expect(configFromStateDict(cfg, sd, 'vit')).toEqual(cfg);
  });

  test('a state dict that is not MobileCLIP is a one-line error naming the missing key', () => {
    expect(() => configFromStateDict(null, shapesOnly([['foo.weight', [3, 3]]]), 'x.pt')).toThrow(MclipError);
    expect(() => configFromStateDict(null, shapesOnly([['foo.weight', [3, 3]]]), 'x.pt')).toThrow(/^x\.pt: no 'text_encoder\.embedding_layer\.weight'/);
    const sd = modelShapes(getConfig('mobileclip_tiny'), false);
    for (const k of [...sd.keys()]) if (k.startsWith('image_encoder.')) sd.delete(k);
    expect(() => configFromStateDict(null, sd, 'y')).toThrow(/^y: no image tower keys/);
  });
});

/** An uneven model: every per-layer form with different widths per layer (needs the per-layer model classes). */
function unevenConfig(): ClipConfig {
  const cfg = microConfig();
  if (cfg.image.kind !== 'mci') throw new Error('mci expected');
  const stages = mciStages(cfg.image);
  stages[0].ffnDims = [12];
  stages[1] = { ...stages[1], depth: 2, ffnDims: [40, 24] };
  stages[3] = { ...stages[3], heads: 3, headDim: 16, ffnDims: [96] };
  cfg.image.stages = stages;
  cfg.text.layers = [
    { mixer: 'repmixer', ffnDim: 128 },
    { mixer: 'attention', heads: 3, headDim: 32, ffnDim: 80 },
    { mixer: 'attention', heads: 1, headDim: 32, ffnDim: 256 },
    { mixer: 'repmixer', ffnDim: 64 },
  ];
  return cfg;
}

describe('configFromStateDict on uneven (per-layer) models', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mclip-infer-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('MCi + text per-layer forms come back from the shapes, unfused and fused; loadModel needs no config', async () => {
    const cfg = unevenConfig();
    for (const fused of [false, true]) {
      const model = new CLIP(cfg, { seed: 3 }).eval();
      if (fused) reparameterize(model);
      const sd = exportStateDict(model);
      const got = configFromStateDict(cfg, sd, 'uneven');
      expect(got).toEqual(cfg);
      // Our format (config in the header): exact, same outputs.
      const ours = join(dir, `uneven-${fused}.safetensors`);
      saveModel(model, ours);
      const exact = await loadModel(ours);
      expect(exact.config).toEqual(cfg);
      const x = tf.randomUniform([1, 32, 32, 3], 0, 1, 'float32', 1);
      const a = model.encodeImage(x);
      const b = exact.model.encodeImage(x);
      expect(tf.tidy(() => a.sub(b).abs().max().dataSync()[0])).toBe(0);
      tf.dispose([x, a, b]);
      exact.model.dispose();
      // No config at all: the same tensors (heads are guessed: 3 × 16 becomes 2 × 24 without a base).
      const bare = join(dir, `bare-${fused}.safetensors`);
      writeSafetensors(bare, sd);
      const loaded = await loadModel(bare);
      expect(expectedShapes(loaded.model)).toEqual(expectedShapes(model));
      expect(loaded.config.image.kind === 'mci' && mciStages(loaded.config.image)[3]).toMatchObject({ heads: 2, headDim: 24 });
      loaded.model.dispose();
      model.dispose();
    }
  });

  test('SE hidden widths that differ from the default (pruned models) live in the config and come back from the shapes', async () => {
    const base = microConfig();
    if (base.image.kind !== 'mci') throw new Error('expected MCi');
    const stages = mciStages(base.image);
    const s = stages.findIndex((st) => st.seDownsample);
    expect(s).toBeGreaterThan(0);
    stages[s].seWidth = 11;
    const cfg: ClipConfig = { ...base, image: { ...base.image, stages, convExpSeWidth: 5 } };
    const model = new CLIP(cfg, { seed: 2 });
    const sd = exportStateDict(model);
    const seKeys = [...sd.keys()].filter((k) => /^image_encoder\.model\.network\.\d+\.proj\.0\.se\.fc1\.weight$/.test(k));
    expect(seKeys.map((k) => sd.get(k)!.shape[0])).toContain(11);
    expect(sd.get('image_encoder.model.conv_exp.se.reduce.weight')!.shape[0]).toBe(5);
    const got = configFromStateDict(null, sd, 'se');
    if (got.image.kind !== 'mci') throw new Error('expected MCi');
    expect(mciStages(got.image)[s].seWidth).toBe(11);
    expect(got.image.convExpSeWidth).toBe(5);
    // a bare file (no config) loads: the widths come from the shapes alone
    const bare = join(dir, 'se-bare.safetensors');
    writeSafetensors(bare, sd);
    const loaded = await loadModel(bare);
    expect(expectedShapes(loaded.model)).toEqual(expectedShapes(model));
    loaded.model.dispose();
    model.dispose();
    // default widths stay implicit
    const ref = new CLIP(base, { seed: 2 });
    const plain = configFromStateDict(null, exportStateDict(ref), 'plain');
    ref.dispose();
    if (plain.image.kind !== 'mci') throw new Error('expected MCi');
    expect(mciStages(plain.image).every((st) => st.seWidth === undefined)).toBe(true);
    expect(plain.image.convExpSeWidth).toBeUndefined();
  });

  test('ViT per-layer blocks come back from the shapes', () => {
    const cfg = microVit();
    if (cfg.image.kind !== 'vit') throw new Error('vit expected');
    cfg.image.blocks = [
      { heads: 1, headDim: 64, ffnDim: 100 },
      { heads: 2, headDim: 16, ffnDim: 256 },
    ];
    const sd = modelShapes(cfg, false);
    const got = configFromStateDict(cfg, sd, 'vit');
    expect(got.image.kind === 'vit' && vitBlocks(got.image)).toEqual(cfg.image.blocks);
    expect(got.image.kind === 'vit' && got.image.stemDim).toBeUndefined();
  });

  test('a ViT stem width other than the derived one (pruned models) lives in the config and comes back from the shapes', () => {
    const cfg = microVit();
    if (cfg.image.kind !== 'vit') throw new Error('vit expected');
    cfg.image.stemDim = 40;
    const sd = modelShapes(cfg, false);
    expect(sd.get('image_encoder.model.patch_emb.0.block.conv.weight')!.shape[0]).toBe(40);
    const got = configFromStateDict(null, sd, 'vit');
    expect(got.image.kind === 'vit' && got.image.stemDim).toBe(40);
  });
});

describe('fromOfficialJson: per-layer lists (official TextTransformer)', () => {
  const official = (text: Record<string, unknown>) => ({
    embed_dim: 512,
    image_cfg: { image_size: 256, model_name: 'mci0' },
    text_cfg: { context_length: 77, vocab_size: 1024, dim: 512, ffn_multiplier_per_layer: 4.0, n_heads_per_layer: 8, n_transformer_layers: 4, norm_layer: 'layer_norm_fp32', causal_masking: false, model_name: 'mct', ...text },
  });

  test('uniform lists are the scalar shorthand; uneven lists give text.layers (one entry per transformer layer)', () => {
    const scalar = fromOfficialJson(official({}));
    expect(fromOfficialJson(official({ n_heads_per_layer: [8, 8, 8, 8], ffn_multiplier_per_layer: [4, 4, 4, 4] }))).toEqual(scalar);
    const uneven = fromOfficialJson(official({ n_heads_per_layer: [8, 4, 16, 8], ffn_multiplier_per_layer: [4, 2, 3.1, 1] }));
    expect(textLayers(uneven.text)).toEqual([
      { mixer: 'repmixer', ffnDim: 2048 },
      { mixer: 'attention', heads: 8, headDim: 64, ffnDim: 2048 },
      { mixer: 'attention', heads: 4, headDim: 128, ffnDim: 1024 },
      { mixer: 'attention', heads: 16, headDim: 32, ffnDim: 1600 }, // ceil(512·3.1/16)·16
      { mixer: 'attention', heads: 8, headDim: 64, ffnDim: 512 },
      { mixer: 'repmixer', ffnDim: 2048 },
    ]);
    const base = fromOfficialJson(official({ model_name: 'base', n_transformer_layers: 2, n_heads_per_layer: [8, 2], ffn_multiplier_per_layer: 2 }));
    expect(textLayers(base.text).map((l) => (l.mixer === 'attention' ? [l.heads, l.ffnDim] : l.mixer))).toEqual([[8, 1024], [2, 1024]]);
  });

  test('wrong lengths and types are one-line errors', () => {
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ n_heads_per_layer: [8, 8, 8] }, /^text_cfg\.n_heads_per_layer has 3 entries but n_transformer_layers is 4$/],
      [{ ffn_multiplier_per_layer: [4, 4, 4, 4, 4] }, /^text_cfg\.ffn_multiplier_per_layer has 5 entries but n_transformer_layers is 4$/],
      [{ n_heads_per_layer: [8, '8', 8, 8] }, /^text_cfg\.n_heads_per_layer\[1\] must be a positive integer, got "8"$/],
      [{ n_heads_per_layer: [8, 8, 2.5, 8] }, /^text_cfg\.n_heads_per_layer\[2\] must be a positive integer, got 2\.5$/],
      [{ ffn_multiplier_per_layer: [4, null, 4, 4] }, /^text_cfg\.ffn_multiplier_per_layer\[1\] must be a positive number, got null$/],
      [{ n_heads_per_layer: 'eight' }, /^text_cfg\.n_heads_per_layer must be a positive integer or a list of them \(one per transformer layer\), got "eight"$/],
      [{ n_heads_per_layer: 0 }, /^text_cfg\.n_heads_per_layer must be a positive integer or a list/],
      [{ n_heads_per_layer: [8, 8, 8, 7] }, /^text_cfg\.n_heads_per_layer\[3\] = 7 does not divide dim 512$/],
    ];
    for (const [t, re] of bad) {
      expect(() => fromOfficialJson(official(t)), JSON.stringify(t)).toThrow(MclipError);
      expect(() => fromOfficialJson(official(t)), JSON.stringify(t)).toThrow(re);
    }
  });

  test('an uneven official config builds, and its shapes read back to the same config', () => {
    const cfg = fromOfficialJson(official({ dim: 64, vocab_size: 64, context_length: 8, n_transformer_layers: 2, n_heads_per_layer: [1, 2], ffn_multiplier_per_layer: [1, 2] }));
    if (cfg.image.kind === 'mci') cfg.image = { ...cfg.image, imageSize: 32, layers: [1, 1, 1, 1], embedDims: [8, 16, 32, 64] };
    expect(configFromStateDict(cfg, modelShapes(cfg, false), 'uneven')).toEqual(cfg);
  });
});
