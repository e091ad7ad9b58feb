import { beforeAll, describe, expect, test } from 'vitest';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { ImageEncoder } from '../../src/base/model/clip.js';
import { getConfig } from '../../src/base/model/configs.js';
import { TextTransformer } from '../../src/base/model/text-transformer.js';
import { Initializer } from '../../src/base/nn/init.js';
import { VisionTransformer } from '../../src/base/model/vit.js';
import { Conv2d } from '../../src/base/layers/conv2d.js';
import { expectedShapes } from '../../src/base/model/state-dict.js';
import { openClipKeyMap, theirShape } from '../../src/base/model/open-clip/keys.js';
import { configFromOpenClip } from '../../src/base/model/open-clip/config.js';
import type { StateDict } from '../../src/base/io/tensor-data.js';
import type { Module } from '../../src/base/nn/module.js';

/**
 * Official parameter counts (open_clip, vocabulary 49408; millions): image trunk unfused / after
 * reparameterisation, text tower.
 */
const OFFICIAL: Record<string, { image: number; fused: number; text: number }> = {
  mobileclip2_s0: { image: 11.41, fused: 11.36, text: 63.43 },
  mobileclip2_s2: { image: 35.82, fused: 35.7, text: 63.43 },
  mobileclip2_b: { image: 86.35, fused: 86.35, text: 63.43 },
  mobileclip2_s3: { image: 125.24, fused: 125.07, text: 123.65 },
  mobileclip2_s4: { image: 321.78, fused: 321.57, text: 123.65 },
  mobileclip2_l14: { image: 303.97, fused: 303.97, text: 123.65 },
};

/** Zeros instead of random draws: the counts only need the shapes, and 100 M random numbers take seconds. */
class ZeroInit extends Initializer {
  override uniformFanIn(shape: number[]): tf.Tensor {
    return tf.zeros(shape);
  }
  override normal(shape: number[]): tf.Tensor {
    return tf.zeros(shape);
  }
  override truncNormal(shape: number[]): tf.Tensor {
    return tf.zeros(shape);
  }
}

const M = (n: number) => n / 1e6;

/** The open_clip key → shape table of towers built from `cfg` (shapes only: config inference reads nothing else). */
function openClipShapes(cfg: ReturnType<typeof getConfig>, image: Module, text: Module): StateDict {
  const shapes = new Map<string, number[]>([['logit_scale', []], ...expectedShapes(image, 'image_encoder.'), ...expectedShapes(text, 'text_encoder.')]);
  const sd: StateDict = new Map();
  for (const [ours, rule] of openClipKeyMap(cfg, shapes.keys(), 'text.', 'test')) sd.set(rule.key, { dtype: 'float32', shape: theirShape(shapes.get(ours)!, rule.transform), data: new Float32Array(0) });
  return sd;
}

describe('MobileCLIP2 named configs: parameter counts of the built towers equal the official ones', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true, gradients: false });
  });

  for (const [name, want] of Object.entries(OFFICIAL)) {
    test(`${name}: image trunk ${want.image} M (train form), ${want.fused} M (fused form)`, () => {
      const cfg = getConfig(name);
      const text = new TextTransformer(cfg.text, cfg.embedDim, { init: new ZeroInit() });
      for (const inferenceMode of [false, true]) {
        const enc = new ImageEncoder(cfg, { inferenceMode, init: new ZeroInit() });
        // An open_clip file of this architecture (unfused or fused) is recognised as this named config.
        expect(configFromOpenClip(openClipShapes(cfg, enc, text), 'text.', name), `${name} from open_clip keys, fused ${inferenceMode}`).toEqual(cfg);
        const got = M(enc.numParams());
        console.log(`${name} image ${inferenceMode ? 'fused' : 'unfused'}: ${enc.numParams()} parameters`);
        expect(Math.abs(got - (inferenceMode ? want.fused : want.image)), `${name} image ${inferenceMode ? 'fused' : 'unfused'}: ${got.toFixed(4)} M`).toBeLessThan(0.005);
        if (!inferenceMode && enc.model instanceof VisionTransformer) {
          // timm's ConvStem: the 4×4 stride-4 conv is unpadded
          const conv = enc.model.get('patch_emb.0.block.conv');
          expect(conv instanceof Conv2d && conv.padding).toEqual([0, 0]);
        }
        enc.dispose();
      }
      console.log(`${name} text: ${text.numParams()} parameters`);
      text.dispose();
    });
  }

  test('text towers: 12 layers of width 512 (63.43 M) or 768 (123.65 M; S3, S4, L-14), non-causal except B', () => {
    for (const name of Object.keys(OFFICIAL)) {
      const t = getConfig(name).text;
      const w = OFFICIAL[name].text > 100 ? 768 : 512;
      expect([t.nTransformerLayers, t.dim, t.nHeads, t.vocabSize, t.causalMasking]).toEqual([12, w, w / 64, 49408, name === 'mobileclip2_b']);
    }
    for (const [name, want] of [['mobileclip2_s0', 63.43], ['mobileclip2_s3', 123.65]] as const) {
      const cfg = getConfig(name);
      const text = new TextTransformer(cfg.text, cfg.embedDim, { init: new ZeroInit() });
      expect(Math.abs(M(text.numParams()) - want), `${name} text ${M(text.numParams()).toFixed(4)} M`).toBeLessThan(0.005);
      text.dispose();
    }
  });
});
