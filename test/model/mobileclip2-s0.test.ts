import { afterAll, beforeAll, expect, test } from 'vitest';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { loadModel, type LoadedModel } from '../../src/base/model/checkpoint.js';
import { mciStages } from '../../src/base/model/configs.js';
import { reparameterize } from '../../src/base/model/reparameterize.js';
import { withCapture } from '../../src/base/nn/module.js';
import { toFloat32, type StateDict } from '../../src/base/io/tensor-data.js';
import { fixture, describeFixtures } from '../paths.js';
import { imageNHWC, readFixture, relErr, tokensTensor } from './helpers.js';

const TOL = 1e-4;
const DIR = ['mobileclip2', 'mobileclip2_s0'] as const;

/** Our `network.<n>` index of each FastViT stage's blocks (the order FastViT builds them in). */
function stageIndex(loaded: LoadedModel): number[] {
  if (loaded.config.image.kind !== 'mci') throw new Error('expected an MCi trunk');
  const out: number[] = [];
  let n = 0;
  const stages = mciStages(loaded.config.image);
  stages.forEach((s, i) => {
    if (s.posEmb) n++;
    out.push(n++);
    if (i + 1 < stages.length) n++;
  });
  return out;
}

/** A fixture activation name → our module path under the image tower (`image`) or the text tower (`text`). */
function ourPath(name: string, stage: number[]): { tower: 'image' | 'text'; path: string } | null {
  let m = /^visual\.trunk\.stages\.(\d+)(?:\.blocks\.(\d+))?$/.exec(name);
  if (m) return { tower: 'image', path: `network.${stage[Number(m[1])]}${m[2] === undefined ? '' : `.${m[2]}`}` };
  const fixed: Record<string, { tower: 'image' | 'text'; path: string }> = {
    'visual.trunk.stem': { tower: 'image', path: 'patch_embed' },
    'visual.trunk.final_conv': { tower: 'image', path: 'conv_exp' },
    'visual.trunk.head': { tower: 'image', path: 'head' },
    'text.token_embedding': { tower: 'text', path: 'embedding_layer' },
    'text.ln_final': { tower: 'text', path: 'final_layer_norm' },
  };
  if (fixed[name]) return fixed[name];
  m = /^text\.transformer\.resblocks\.(\d+)$/.exec(name);
  if (m) return { tower: 'text', path: `transformer.${m[1]}` };
  return null;
}

describeFixtures('MobileCLIP2-S0 fixture (open_clip layout) parity', () => {
  let loaded: LoadedModel;
  let ref: StateDict;
  let images: tf.Tensor4D;
  let tokens: tf.Tensor2D;

  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true, gradients: false });
    loaded = await loadModel(fixture(...DIR, 'open_clip_model_fp16.safetensors'));
    const inputs = readFixture(...DIR, 'inputs.safetensors');
    ref = readFixture(...DIR, 'outputs_unfused.safetensors');
    images = imageNHWC(inputs);
    tokens = tokensTensor(inputs);
  });
  afterAll(() => {
    loaded?.model.dispose();
    tf.dispose([images, tokens]);
  });

  test('the architecture comes from the keys: fastvit_mci0 trunk, 2-layer non-causal text of vocabulary 1024', () => {
    const c = loaded.config;
    expect(loaded.layout).toEqual({ kind: 'open_clip', textPrefix: 'text.' });
    expect(loaded.floatDType).toBe('float16');
    expect(c.name).toBe('mobileclip2_s0_custom');
    expect(c.image.kind === 'mci' && c.image.headBias).toBe(true);
    expect(c.image.kind === 'mci' && c.image.layers).toEqual([2, 6, 10, 2]);
    expect(c.text.nTransformerLayers).toBe(2);
    expect(c.text.vocabSize).toBe(1024);
    expect(c.text.causalMasking).toBe(false);
    expect(c.text.nHeads).toBe(8);
    expect(loaded.model.imageEncoder.numParams()).toBe(11406976);
    expect(loaded.model.textEncoder.numParams()).toBe(7131648);
  });

  test('unfused: image_features, text_features and every captured activation', () => {
    const stage = stageIndex(loaded);
    const names = [...ref.keys()].filter((k) => k !== 'image_features' && k !== 'text_features');
    const img = names.filter((n) => ourPath(n, stage)?.tower === 'image');
    const txt = names.filter((n) => ourPath(n, stage)?.tower === 'text');
    expect(img.length + txt.length).toBe(names.length);
    const m = loaded.model;
    const ri = withCapture(m.imageEncoder.model, img.map((n) => ourPath(n, stage)!.path), () => m.encodeImage(images));
    const rt = withCapture(m.textEncoder, txt.map((n) => ourPath(n, stage)!.path), () => m.encodeText(tokens));
    let worst = 0;
    for (const n of img) {
      const t = ri.captured.get(ourPath(n, stage)!.path)!;
      const e = relErr(toFloat32(ref.get(n)!), (t.rank === 4 ? t.transpose([0, 3, 1, 2]) : t).dataSync());
      worst = Math.max(worst, e);
      expect(e, n).toBeLessThanOrEqual(TOL);
    }
    for (const n of txt) {
      const e = relErr(toFloat32(ref.get(n)!), rt.captured.get(ourPath(n, stage)!.path)!.dataSync());
      worst = Math.max(worst, e);
      expect(e, n).toBeLessThanOrEqual(TOL);
    }
    const ei = relErr(toFloat32(ref.get('image_features')!), ri.result.dataSync());
    const et = relErr(toFloat32(ref.get('text_features')!), rt.result.dataSync());
    console.log(`MobileCLIP2-S0 unfused: image_features ${ei.toExponential(2)}, text_features ${et.toExponential(2)}, worst of ${names.length} activations ${worst.toExponential(2)}`);
    expect(ei).toBeLessThanOrEqual(TOL);
    expect(et).toBeLessThanOrEqual(TOL);
    tf.dispose([ri.result, rt.result, ...ri.captured.values(), ...rt.captured.values()]);
  });

  test('fused (reparameterize): image_features and text_features of the reparameterised model', () => {
    const fusedRef = readFixture(...DIR, 'outputs_fused.safetensors');
    const before = loaded.model.numParams();
    reparameterize(loaded.model);
    expect(loaded.model.numParams()).toBeLessThan(before);
    const img = loaded.model.encodeImage(images);
    const txt = loaded.model.encodeText(tokens);
    const ei = relErr(toFloat32(fusedRef.get('image_features')!), img.dataSync());
    const et = relErr(toFloat32(fusedRef.get('text_features')!), txt.dataSync());
    console.log(`MobileCLIP2-S0 fused: image_features ${ei.toExponential(2)}, text_features ${et.toExponential(2)}`);
    expect(ei).toBeLessThanOrEqual(TOL);
    expect(et).toBeLessThanOrEqual(TOL);
    tf.dispose([img, txt]);
  });
});
