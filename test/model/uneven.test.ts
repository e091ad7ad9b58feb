/**
 * Uneven models everywhere: a model whose text layers each have their own head count and FFN width
 * (and whose MCi stages are uneven) trains with a flat tensor count, resumes exactly, round-trips through
 * our safetensors, reparameterises, is costed, and exports to ONNX with onnxruntime parity.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { CLIP } from '../../src/base/model/clip.js';
import { exportStateDict } from '../../src/base/model/state-dict.js';
import { loadModel, saveModel } from '../../src/base/model/checkpoint.js';
import { reparameterize } from '../../src/base/model/reparameterize.js';
import { Trainer, type TrainBatch } from '../../src/base/train/trainer.js';
import { countParams, modelCost } from '../../src/eval/cost.js';
import { exportOnnx } from '../../src/export/index.js';
import { MICRO_CONTEXT as L, unevenMicroConfig } from '../micro-config.js';

const cfg = unevenMicroConfig();
const B = 4;
const S = cfg.image.imageSize;
let dir: string;

beforeAll(async () => {
  await initBackend({ backend: 'wasm', quiet: true });
  dir = mkdtempSync(join(tmpdir(), 'mclip-uneven-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function batch(step: number): TrainBatch {
  let s = 77 + step * 104729;
  const rnd = () => (s = (s * 1103515245 + 12345) % 2147483648) / 2147483648;
  const t = new Int32Array(B * L);
  for (let b = 0; b < B; b++) {
    const len = 3 + ((b + step) % 8);
    t[b * L] = cfg.text.vocabSize - 2;
    for (let j = 1; j < len; j++) t[b * L + j] = 1 + Math.floor(rnd() * (cfg.text.vocabSize - 3));
    t[b * L + len] = cfg.text.vocabSize - 1;
  }
  return { images: tf.tensor4d(Float32Array.from({ length: B * S * S * 3 }, rnd), [B, S, S, 3]), gtTokens: tf.tensor2d(t, [B, L], 'int32') };
}

function run(trainer: Trainer, from: number, to: number): number[] {
  const losses: number[] = [];
  for (let i = from; i < to; i++) {
    const b = batch(i);
    losses.push(trainer.step(b).loss);
    tf.dispose([b.images, b.gtTokens]);
  }
  return losses;
}

function weights(m: CLIP): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const [k, v] of exportStateDict(m)) if (v.dtype === 'float32') out.set(k, v.data as Float32Array);
  return out;
}

describe('an uneven model (per-layer heads and FFN widths)', () => {
  test('trains 20 steps with a flat tensor count and resumes exactly', async () => {
    const opts = { lr: 2e-3, totalSteps: 20, warmup: 2, checkpointDir: join(dir, 'ckpt'), saveEvery: 10 };
    const a = new CLIP(cfg, { seed: 1 });
    const ta = new Trainer(a, opts);
    run(ta, 0, 1); // first step allocates the optimiser's lazily created tensors, if any
    const before = tf.memory().numTensors;
    const lossA = run(ta, 1, 20);
    expect(tf.memory().numTensors).toBe(before);
    expect(lossA.every(Number.isFinite)).toBe(true);
    // A fresh model and trainer resumed from step 10 take the same steps 11–20.
    const b = new CLIP(cfg, { seed: 99 });
    const tb = new Trainer(b, { ...opts, checkpointDir: join(dir, 'ckpt-b'), saveEvery: 0 });
    const meta = await tb.resume(join(dir, 'ckpt', 'step-00000010'));
    expect(meta.step).toBe(10);
    const lossB = run(tb, 10, 20);
    expect(lossB).toEqual(lossA.slice(9));
    const wa = weights(a);
    const wb = weights(b);
    for (const [k, v] of wa) expect(wb.get(k), k).toEqual(v);
    ta.dispose();
    tb.dispose();
    a.dispose();
    b.dispose();
  });

  test('round-trips through safetensors, reparameterises, is costed and exports with ORT parity', async () => {
    const m = new CLIP(cfg, { seed: 4 }).eval();
    const path = join(dir, 'uneven.safetensors');
    saveModel(m, path);
    const loaded = await loadModel(path);
    expect(loaded.config.text.layers).toEqual(cfg.text.layers);
    const ids = batch(0);
    const ref = tf.tidy(() => Array.from(m.encodeText(ids.gtTokens).dataSync()));
    const got = tf.tidy(() => Array.from(loaded.model.encodeText(ids.gtTokens).dataSync()));
    expect(got).toEqual(ref);
    const cost = modelCost(loaded.model);
    // Text attention MACs at the full context: 2·heads·N²·d per layer (3·16 and 1·32 inner widths).
    const attn = cost.records.filter((r) => r.tower === 'text' && r.kind === 'attention').map((r) => r.macs);
    expect(attn).toEqual([2 * 3 * L * L * 16, 2 * 1 * L * L * 32]);
    const params = countParams(loaded.model);
    reparameterize(loaded.model);
    const fusedOut = tf.tidy(() => Array.from(loaded.model.encodeText(ids.gtTokens).dataSync()));
    const err = Math.max(...fusedOut.map((v, i) => Math.abs(v - ref[i])));
    expect(err).toBeLessThan(1e-4);
    expect(countParams(loaded.model).text).toBeLessThan(params.text); // fused RepMixers drop their branches
    const r = await exportOnnx(loaded.model, join(dir, 'uneven.onnx'), { tower: 'both', opset: 17, verifyBatch: 2 });
    expect(r.verify!.relDiff.image_features).toBeLessThanOrEqual(1e-4);
    expect(r.verify!.relDiff.text_features).toBeLessThanOrEqual(1e-4);
    tf.dispose([ids.images, ids.gtTokens]);
    loaded.model.dispose();
    m.dispose();
  });
});
