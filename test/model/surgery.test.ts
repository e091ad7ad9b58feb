/**
 * The core's surgery seams: module look-up and replacement, removable forward hooks (incl. the
 * attention-weights site), the text tower's forward context, and models built from per-layer configs.
 */
import { describe, expect, it } from 'vitest';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { CLIP } from '../../src/base/model/clip.js';
import { textLayers, mciStages } from '../../src/base/model/configs.js';
import { Linear } from '../../src/base/layers/linear.js';
import { MultiHeadAttention } from '../../src/base/layers/multi-head-attention.js';
import { TransformerEncoder } from '../../src/base/layers/transformer-encoder.js';
import { ForwardContext } from '../../src/base/nn/context.js';
import { TEXT_TOKENS, eotIndex } from '../../src/base/model/text-context.js';
import { expectedShapes } from '../../src/base/model/state-dict.js';
import { Initializer } from '../../src/base/nn/init.js';
import { MICRO_CONTEXT, microConfig, unevenMicroConfig } from '../micro-config.js';
import { microTokens as tokens } from './helpers.js';

await initBackend({ backend: 'wasm', quiet: true });

function images(n: number, size = 32): tf.Tensor4D {
  return tf.tidy(() => tf.randomUniform([n, size, size, 3], 0, 1, 'float32', 3) as tf.Tensor4D);
}

function values(t: tf.Tensor): Float32Array {
  return Float32Array.from(t.dataSync() as Float32Array);
}

describe('module surgery', () => {
  it('get(path) finds a module, and names the missing part otherwise', () => {
    const model = new CLIP(microConfig());
    try {
      expect(model.get('text_encoder.transformer.1.pre_norm_mha.1')).toBeInstanceOf(MultiHeadAttention);
      expect(model.get('')).toBe(model);
      expect(() => model.get('text_encoder.transformer.9.attn')).toThrow(/text_encoder\.transformer has no child '9' \(children: 0, 1, 2\)/);
    } finally {
      model.dispose();
    }
  });

  it('replace(path, m) disposes the old module and every typed accessor sees the new one', () => {
    const model = new CLIP(microConfig());
    try {
      const attn = model.textEncoder.transformer.at(1) as TransformerEncoder;
      const old = attn.attn.qkvProj;
      const before = tf.memory().numTensors;
      const fresh = new Linear(64, 3 * 64, { bias: true, init: new Initializer(5) });
      model.replace('text_encoder.transformer.1.pre_norm_mha.1.qkv_proj', fresh);
      // Old weight + bias freed, new ones allocated: same count, and the old variable is gone.
      expect(tf.memory().numTensors).toBe(before);
      expect(old.namedParams()).toHaveLength(0);
      expect(attn.attn.qkvProj).toBe(fresh);
      expect(model.get('text_encoder.transformer.1.pre_norm_mha.1.qkv_proj')).toBe(fresh);
      expect(model.namedParams().some(([, p]) => p.variable === fresh.weight)).toBe(true);
      expect(() => model.replace('text_encoder.nope', fresh)).toThrow(/no child 'nope'/);
    } finally {
      model.dispose();
    }
  });

  it('forward hooks read and replace values; removing them restores bit-identical outputs', () => {
    const model = new CLIP(microConfig()).eval();
    const ids = tokens([5, 9]);
    const img = images(2);
    try {
      const ref = tf.tidy(() => values(model.encodeText(ids)));
      const refImg = tf.tidy(() => values(model.encodeImage(img)));
      const seen: number[][] = [];
      const enc = model.get('text_encoder.transformer.1');
      const h1 = enc.registerForwardHook((_m, _x, y) => {
        seen.push(y.shape);
        return y.mul(0);
      });
      const pre = model.get('image_encoder.model.conv_exp').registerForwardPreHook((_m, x) => x.mul(2));
      const zeroed = tf.tidy(() => values(model.encodeText(ids)));
      const doubled = tf.tidy(() => values(model.encodeImage(img)));
      expect(seen).toEqual([[2, MICRO_CONTEXT, 64]]);
      // The hook's replacement propagated: outputs changed.
      expect(Math.max(...zeroed.map((v, i) => Math.abs(v - ref[i])))).toBeGreaterThan(1e-3);
      expect(Math.max(...doubled.map((v, i) => Math.abs(v - refImg[i])))).toBeGreaterThan(1e-6);
      h1.remove();
      h1.remove(); // idempotent
      pre.remove();
      expect(model.hasHooks()).toBe(false);
      expect(tf.tidy(() => values(model.encodeText(ids)))).toEqual(ref);
      expect(tf.tidy(() => values(model.encodeImage(img)))).toEqual(refImg);
    } finally {
      tf.dispose([ids, img]);
      model.dispose();
    }
  });

  it('the attention weights reach a hook on attn_probs: [B, heads, N, N], rows summing to 1', () => {
    const model = new CLIP(microConfig('mobileclip_tiny_base')).eval();
    const ids = tokens([4, 7]);
    try {
      let probs: tf.Tensor | null = null;
      const h = model.get('text_encoder.transformer.0.pre_norm_mha.1.attn_probs').registerForwardHook((_m, _x, p) => {
        probs = tf.keep(p.clone());
      });
      tf.tidy(() => model.encodeText(ids)).dispose();
      h.remove();
      const p = probs as tf.Tensor | null;
      expect(p?.shape).toEqual([2, 2, MICRO_CONTEXT, MICRO_CONTEXT]);
      const sums = tf.tidy(() => values(p!.sum(-1)));
      for (const s of sums) expect(Math.abs(s - 1)).toBeLessThan(1e-5);
      // Causal: nothing above the diagonal.
      const d = values(p!);
      expect(d[0 * MICRO_CONTEXT + 5]).toBe(0);
      p!.dispose();
      // The image MHSA has the same site.
      let imgShape: number[] = [];
      const hi = model.get('image_encoder.model.network.7.0.token_mixer.attn_probs').registerForwardHook((_m, _x, y) => {
        imgShape = y.shape;
      });
      const im = images(1);
      tf.tidy(() => model.encodeImage(im)).dispose();
      hi.remove();
      im.dispose();
      expect(imgShape).toEqual([1, 4, 1, 1]);
    } finally {
      ids.dispose();
      model.dispose();
    }
  });
});

describe('text forward context', () => {
  it('carries the EOT index; a layer that trims tokens updates it and pooling follows (exact for causal padding trimming)', () => {
    const model = new CLIP(microConfig('mobileclip_tiny_base')).eval();
    const ids = tokens([3, 6]);
    try {
      const ref = tf.tidy(() => values(model.encodeText(ids)));
      // After layer 0, keep positions 0..max(EOT) only (causal attention: later positions never reach the EOT row).
      const keep = 7;
      const h = model.get('text_encoder.transformer.0').registerForwardHook((_m, _x, y, ctx) => {
        const state = ctx!.require(TEXT_TOKENS);
        const positions = tf.tile(tf.range(0, keep, 1, 'int32').expandDims(0), [2, 1]) as tf.Tensor2D;
        ctx!.set(TEXT_TOKENS, { ...state, positions });
        return y.slice([0, 0, 0], [-1, keep, -1]);
      });
      const ctx = new ForwardContext();
      let eot: number[] = [];
      const h2 = model.get('text_encoder.final_layer_norm').registerForwardHook((_m, x, _y, c) => {
        expect(x.shape[1]).toBe(keep);
        eot = Array.from(c!.require(TEXT_TOKENS).eot.dataSync());
      });
      const trimmed = tf.tidy(() => values(model.encodeText(ids, ctx)));
      h.remove();
      h2.remove();
      expect(eot).toEqual([3, 6]);
      const err = Math.max(...trimmed.map((v, i) => Math.abs(v - ref[i])));
      expect(err).toBeLessThan(1e-5);
      expect(tf.tidy(() => Array.from(eotIndex(ids).dataSync()))).toEqual([3, 6]);
    } finally {
      ids.dispose();
      model.dispose();
    }
  });
});

describe('per-layer configs', () => {
  it('the per-layer form of a named config builds the same parameters as its shorthand', () => {
    for (const name of ['mobileclip_tiny', 'mobileclip_tiny_base'] as const) {
      const short = microConfig(name);
      const long = structuredClone(short);
      long.text.layers = textLayers(short.text);
      if (long.image.kind === 'mci') long.image.stages = mciStages(long.image);
      const a = new CLIP(short, { seed: 3 });
      const b = new CLIP(long, { seed: 3 });
      try {
        expect([...expectedShapes(b)]).toEqual([...expectedShapes(a)]);
      } finally {
        a.dispose();
        b.dispose();
      }
    }
  });

  it('an uneven model has the widths its config asks for, derived from its weights', () => {
    const model = new CLIP(unevenMicroConfig());
    try {
      const shapes = expectedShapes(model);
      expect(shapes.get('text_encoder.transformer.1.pre_norm_mha.1.qkv_proj.weight')).toEqual([3 * 48, 64]);
      expect(shapes.get('text_encoder.transformer.1.pre_norm_mha.1.out_proj.weight')).toEqual([64, 48]);
      expect(shapes.get('text_encoder.transformer.2.pre_norm_ffn.1.weight')).toEqual([200, 64]);
      expect(shapes.get('text_encoder.transformer.3.convffn.fc1.weight')).toEqual([48, 64, 1, 1]);
      expect(shapes.get('image_encoder.model.network.7.0.token_mixer.qkv.weight')).toEqual([3 * 48, 64]);
      expect(shapes.get('image_encoder.model.network.4.1.convffn.fc1.weight')).toEqual([100, 32, 1, 1]);
      const attn = (model.textEncoder.transformer.at(1) as TransformerEncoder).attn;
      expect([attn.numHeads, attn.headDim, attn.embedDim, attn.innerDim]).toEqual([3, 16, 64, 48]);
      expect((model.textEncoder.transformer.at(2) as TransformerEncoder).ffnDim).toBe(200);
      const out = tf.tidy(() => {
        const f = model.forwardPair(images(2), tokens([4, 8]));
        return [f.image.shape, f.text.shape];
      });
      expect(out).toEqual([
        [2, 64],
        [2, 64],
      ]);
    } finally {
      model.dispose();
    }
  });
});
