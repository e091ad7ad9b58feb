import { beforeAll, describe, expect, test } from 'vitest';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { CLIP } from '../../src/base/model/clip.js';
import { getConfig, type ClipConfig } from '../../src/base/model/configs.js';
import { exportStateDict } from '../../src/base/model/state-dict.js';
import { Trainer } from '../../src/base/train/trainer.js';
import { modelCost } from '../../src/eval/cost.js';
import { switchToSigmoid } from '../../src/sigmoid-attn/switch.js';
import { attentionPruning } from '../../src/prune/attention-prune.js';
import { inheritWeights } from '../../src/distill/inherit.js';
import { ImageGates } from '../../src/distill/masks/image-gates.js';
import { ViTGates } from '../../src/distill/masks/vit-gates.js';
import { expectImageGatesPruneExactly, spreadLogAlphas } from '../distill/mask-helpers.js';
import { MICRO_CONTEXT, MICRO_VOCAB, microTokenRows } from '../micro-config.js';

/** Micro MobileCLIP2 models in open_clip's structure (head bias; the ViT-MCi's unpadded stem). */
function micro(kind: 'mci' | 'vit'): ClipConfig {
  const cfg = getConfig(kind === 'mci' ? 'mobileclip2_s0' : 'mobileclip2_b');
  cfg.embedDim = 32;
  cfg.text = { ...cfg.text, contextLength: MICRO_CONTEXT, vocabSize: MICRO_VOCAB, dim: 64, nHeads: 1, nTransformerLayers: 2 };
  if (cfg.image.kind === 'mci') cfg.image = { ...cfg.image, imageSize: 32, layers: [1, 1, 1, 1], embedDims: [8, 16, 32, 64], headDim: 32 };
  else cfg.image = { ...cfg.image, imageSize: 32, embedDim: 64, layers: 2, heads: 1, posGrid: 2 };
  return cfg;
}

const finite = (t: tf.Tensor) => Number.isFinite(t.sum().dataSync()[0]);

describe('MobileCLIP2 (open_clip-structured) models under cost, training and the plug-ins', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true, gradients: true });
  });

  for (const kind of ['mci', 'vit'] as const) {
    test(`${kind}: cost counts the head bias; a training step moves it; sigmoid switch, EOT-attention pruning and inheritance run`, () => {
      const cfg = micro(kind);
      const model = new CLIP(cfg, { seed: 1 });
      const cost = modelCost(model.eval());
      expect(cost.params.image).toBe(model.imageEncoder.numParams());
      expect(cost.macs.image).toBeGreaterThan(0);
      expect(cost.macs.text).toBeGreaterThan(0);

      const head = kind === 'mci' ? model.imageEncoder.get('model.head') : model.imageEncoder.get('model.classifier');
      const bias = head.namedParams().find(([n]) => n === 'bias')![1].variable;
      const before = bias.dataSync().slice();
      model.train();
      const trainer = new Trainer(model, { lr: 1e-2, totalSteps: 2, seed: 2 });
      const tokens = microTokenRows();
      const images = tf.randomUniform([4, 32, 32, 3], 0, 1, 'float32', 3) as tf.Tensor4D;
      const m = trainer.step({ images, gtTokens: tokens });
      expect(Number.isFinite(m.loss)).toBe(true);
      expect(bias.dataSync().some((v, i) => v !== before[i])).toBe(true);
      trainer.dispose();
      model.eval();

      const pruning = attentionPruning(model.textEncoder, { layers: [{ layer: 1, keep: 0.5 }] });
      const pruned = model.encodeText(tokens);
      expect(pruned.shape).toEqual([4, 32]);
      expect(finite(pruned)).toBe(true);
      pruning.remove();

      const student = inheritWeights(exportStateDict(model), { textLayers: 1 }, { teacherConfig: cfg });
      expect(student.config.text.nTransformerLayers).toBe(1);

      switchToSigmoid(model);
      const s = model.encodeImage(images);
      expect(finite(s)).toBe(true);
      tf.dispose([tokens, images, pruned, s]);
      model.dispose();
    });
  }

  for (const kind of ['mci', 'vit'] as const) {
    test(`${kind}: TinyCLIP image masks prune a head-bias model exactly (masked == pruned), the bias kept`, () => {
      const before = tf.memory().numTensors;
      const model = new CLIP(micro(kind), { seed: 4 });
      const x = tf.randomUniform([2, 32, 32, 3], 0, 1, 'float32', 5) as tf.Tensor4D;
      const gates = kind === 'mci' ? new ImageGates(model, { seed: 1 }) : new ViTGates(model, { seed: 1 });
      gates.install();
      spreadLogAlphas(gates, 40);
      const pruned = expectImageGatesPruneExactly(model, gates, x);
      const key = kind === 'mci' ? 'image_encoder.model.head.bias' : 'image_encoder.model.classifier.bias';
      expect(exportStateDict(pruned).get(key)!.data).toEqual(exportStateDict(model).get(key)!.data);
      pruned.dispose();
      gates.dispose();
      model.dispose();
      x.dispose();
      expect(tf.memory().numTensors).toBe(before);
    });
  }
});
