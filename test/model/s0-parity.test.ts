import { beforeAll, expect, test } from 'vitest';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { loadTorchCheckpoint } from '../../src/base/io/torch-checkpoint.js';
import { toFloat32, type StateDict } from '../../src/base/io/tensor-data.js';
import { CLIP } from '../../src/base/model/clip.js';
import { fromOfficialJson } from '../../src/base/model/configs.js';
import { exportStateDict, loadStateDict } from '../../src/base/model/state-dict.js';
import { reparameterize } from '../../src/base/model/reparameterize.js';
import { withCapture } from '../../src/base/nn/module.js';
import { fixture, describeFixtures } from '../paths.js';
import { imageNHWC, readFixture, readJson, relErr, tokensTensor } from './helpers.js';

const TOL = 1e-4;

/** Fixture activation names → (module path under the tower, layout conversion to the reference). */
function toReference(name: string, t: tf.Tensor): tf.Tensor {
  if (name.startsWith('image.') && t.rank === 4) return t.transpose([0, 3, 1, 2]); // NHWC → NCHW
  if (name === 'text.transformer.0.token_mixer' || name === 'text.transformer.5.token_mixer') return t.transpose([0, 3, 1, 2]); // [B,1,S,C] → [B,C,1,S]
  return t;
}

describeFixtures('MobileCLIP-S0 fixture parity', () => {
  let model: CLIP;
  let ref: StateDict;
  let fusedRef: StateDict;
  let images: tf.Tensor4D;
  let tokens: tf.Tensor2D;
  const ours = new Map<string, Float32Array>();

  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true, gradients: false });
    const cfg = fromOfficialJson(readJson(('mobileclip_s0'), 'config.json'), 'mobileclip_s0');
    model = new CLIP(cfg);
    loadStateDict(model, await loadTorchCheckpoint(fixture('mobileclip_s0', 'model_fp16.pt')), 'model_fp16.pt');
    model.eval();
    const inputs = readFixture('mobileclip_s0', 'inputs.safetensors');
    ref = readFixture('mobileclip_s0', 'outputs_unfused.safetensors');
    fusedRef = readFixture('mobileclip_s0', 'outputs_fused.safetensors');
    images = imageNHWC(inputs);
    tokens = tokensTensor(inputs);
  });

  test('unfused: every image activation, the pooled features and the embedding', () => {
    const names = [...ref.keys()].filter((k) => k.startsWith('image.') && !['image.embed', 'image.embed_norm', 'image.head.pool'].includes(k));
    expect(names.length).toBe(15);
    const { result, captured } = withCapture(
      model.imageEncoder.model,
      names.map((n) => n.slice('image.'.length)),
      () => model.encodeImage(images),
    );
    for (const n of names) {
      const t = captured.get(n.slice('image.'.length))!;
      const e = relErr(toFloat32(ref.get(n)!), toReference(n, t).dataSync());
      expect(e, n).toBeLessThanOrEqual(TOL);
    }
    const pooled = captured.get('conv_exp')!.mean([1, 2]);
    expect(relErr(toFloat32(ref.get('image.head.pool')!), pooled.dataSync()), 'image.head.pool').toBeLessThanOrEqual(TOL);
    expect(relErr(toFloat32(ref.get('image.embed')!), result.dataSync()), 'image.embed').toBeLessThanOrEqual(TOL);
    ours.set('image.embed', result.dataSync() as Float32Array);
    tf.dispose([pooled, result, ...captured.values()]);
  });

  test('unfused: every text activation, pooled row and the embedding', () => {
    const names = [...ref.keys()].filter((k) => k.startsWith('text.') && !['text.embed', 'text.embed_norm', 'text.pooled', 'text.embedding_dropout'].includes(k));
    const paths = names.map((n) => n.slice('text.'.length));
    const { result, captured } = withCapture(model.textEncoder, [...paths, 'embedding_dropout'], () => model.encodeText(tokens));
    for (const n of names) {
      const t = captured.get(n.slice('text.'.length))!;
      expect(relErr(toFloat32(ref.get(n)!), toReference(n, t).dataSync()), n).toBeLessThanOrEqual(TOL);
    }
    expect(relErr(toFloat32(ref.get('text.embedding_dropout')!), captured.get('embedding_dropout')!.dataSync())).toBeLessThanOrEqual(TOL);
    const pooled = model.textEncoder.pool(captured.get('final_layer_norm')!, tokens);
    expect(relErr(toFloat32(ref.get('text.pooled')!), pooled.dataSync()), 'text.pooled').toBeLessThanOrEqual(TOL);
    expect(relErr(toFloat32(ref.get('text.embed')!), result.dataSync()), 'text.embed').toBeLessThanOrEqual(TOL);
    ours.set('text.embed', result.dataSync() as Float32Array);
    tf.dispose([pooled, result, ...captured.values()]);
  });

  test('unfused: normalised features, logit scale and logits', () => {
    const { image, text, scale } = model.forwardPair(images, tokens);
    expect(relErr(toFloat32(ref.get('image.embed_norm')!), image.dataSync())).toBeLessThanOrEqual(TOL);
    expect(relErr(toFloat32(ref.get('text.embed_norm')!), text.dataSync())).toBeLessThanOrEqual(TOL);
    expect(Math.abs(scale.dataSync()[0] - toFloat32(ref.get('logit_scale_exp')!)[0])).toBeLessThan(1e-4);
    const logits = tf.matMul(image, text, false, true).mul(scale);
    expect(relErr(toFloat32(ref.get('logits_per_image')!), logits.dataSync())).toBeLessThanOrEqual(TOL);
    tf.dispose([image, text, scale, logits]);
  });

  test('reparameterize: official fused structure and every fused output', () => {
    const before = model.numParams();
    reparameterize(model);
    const keys = readJson<Array<{ name: string; shape: number[] }>>('mobileclip_s0', 'fused_state_dict_keys.json');
    const sd = exportStateDict(model);
    expect([...sd.keys()].sort()).toEqual(keys.map((k) => k.name).sort());
    for (const k of keys) expect(sd.get(k.name)!.shape, k.name).toEqual(k.shape);
    expect(model.numParams()).toBeLessThan(before);

    const names = [...fusedRef.keys()];
    const imgNames = names.filter((n) => n.startsWith('image.') && !n.startsWith('image.embed'));
    const { result: img, captured } = withCapture(model.imageEncoder.model, imgNames.map((n) => n.slice(6)), () => model.encodeImage(images));
    for (const n of imgNames) {
      expect(relErr(toFloat32(fusedRef.get(n)!), toReference(n, captured.get(n.slice(6))!).dataSync()), n).toBeLessThanOrEqual(TOL);
    }
    const r2 = withCapture(model.textEncoder, ['final_layer_norm'], () => model.encodeText(tokens));
    const txt = r2.result;
    expect(relErr(toFloat32(fusedRef.get('image.embed')!), img.dataSync())).toBeLessThanOrEqual(TOL);
    expect(relErr(toFloat32(fusedRef.get('text.embed')!), txt.dataSync())).toBeLessThanOrEqual(TOL);
    if (fusedRef.has('text.pooled')) {
      const pooled = model.textEncoder.pool(r2.captured.get('final_layer_norm')!, tokens);
      expect(relErr(toFloat32(fusedRef.get('text.pooled')!), pooled.dataSync())).toBeLessThanOrEqual(TOL);
      pooled.dispose();
    }
    // Our fused vs our unfused.
    expect(relErr(ours.get('image.embed')!, img.dataSync())).toBeLessThanOrEqual(TOL);
    expect(relErr(ours.get('text.embed')!, txt.dataSync())).toBeLessThanOrEqual(TOL);
    const { image, text, scale } = model.forwardPair(images, tokens);
    const logits = tf.matMul(image, text, false, true).mul(scale);
    expect(relErr(toFloat32(fusedRef.get('logits_per_image')!), logits.dataSync())).toBeLessThanOrEqual(TOL);
    tf.dispose([img, txt, image, text, scale, logits, ...captured.values(), ...r2.captured.values()]);
  });
});
