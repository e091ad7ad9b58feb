/**
 * Training with sigmoid attention: gradients reach every weight of a stabilised sigmoid model (qkv, the
 * QK-norms, the hybrid norm, the LayerScale) and are finite; the Trainer fits a fixed synthetic batch
 * (the loss falls) from scratch.
 */
import { beforeAll, describe, expect, test } from 'vitest';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { CLIP } from '../../src/base/model/clip.js';
import { Trainer } from '../../src/base/train/trainer.js';
import { lossAndGrads } from '../../src/base/train/step.js';
import { withSigmoidAttention } from '../../src/sigmoid-attn/index.js';
import { MICRO_CONTEXT, microConfig } from '../micro-config.js';
import { TEST_TEACHER_WIDTH, syntheticBatch } from '../train/synthetic-batch.js';

beforeAll(async () => {
  await initBackend({ backend: 'wasm', quiet: true });
});

const cfg = withSigmoidAttention(microConfig(), { qkNorm: true, hybridNorm: true, layerScale: 0.1 });
const batch = () => syntheticBatch(cfg, 0, { batch: 4, context: MICRO_CONTEXT, seed: 7, teacherWidth: TEST_TEACHER_WIDTH, pick: 0 });

describe('training a sigmoid-attention model', () => {
  test('gradients reach the attention weights and the stabilisers, all finite', () => {
    const model = new CLIP(cfg, { seed: 1 });
    model.train();
    const b = batch();
    const r = lossAndGrads(model, b);
    const enc = 'text_encoder.transformer.1.pre_norm_mha';
    for (const k of [`${enc}.1.qkv_proj.weight`, `${enc}.1.q_norm.weight`, `${enc}.1.k_norm.bias`, `${enc}.2.weight`, `${enc}.3.gamma`, 'image_encoder.model.network.7.0.token_mixer.qkv.weight']) {
      const v = model.namedParams().find(([n]) => n.endsWith(k))?.[1].variable;
      expect(v, k).toBeDefined();
      const g = r.grads[v!.name];
      expect(g, k).toBeDefined();
      const d = g!.dataSync();
      expect(d.every(Number.isFinite), k).toBe(true);
      expect(Math.max(...d.map(Math.abs)), k).toBeGreaterThan(0);
    }
    tf.dispose([r.loss, ...Object.values(r.losses), ...Object.values(r.grads)]);
    tf.dispose([b.images, b.gtTokens, ...(b.synTokens ? [b.synTokens] : [])]);
    model.dispose();
  });

  test('the Trainer fits a fixed batch from scratch: the loss falls', () => {
    const model = new CLIP(cfg, { seed: 2 });
    const trainer = new Trainer(model, { lr: 3e-3, totalSteps: 8, weightDecay: 0 });
    const b = batch();
    const losses: number[] = [];
    for (let i = 0; i < 8; i++) losses.push(trainer.step(b).loss);
    expect(losses.every(Number.isFinite)).toBe(true);
    expect(losses[losses.length - 1]).toBeLessThan(losses[0] * 0.9);
    tf.dispose([b.images, b.gtTokens, ...(b.synTokens ? [b.synTokens] : [])]);
    model.dispose();
  });
});
