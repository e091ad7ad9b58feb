/**
 * Embedding engines: the ORT engine (a checkpoint's cached, verified ONNX towers) embeds as the tfjs
 * model does (≤ 1e-4 relative); the cache is keyed by the checkpoint's bytes and reused; the
 * fallback to tfjs says why.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { CLIP } from '../../src/base/model/clip.js';
import { loadModel, saveModel } from '../../src/base/model/checkpoint.js';
import { FastViT } from '../../src/base/model/mci.js';
import { Module } from '../../src/base/nn/module.js';
import { embedImages, embedTokens, type Embeddings } from '../../src/eval/embed.js';
import { nchwToNhwc, nhwcToNchw, TfjsEngine } from '../../src/eval/engine.js';
import { openEngine, OrtEngine } from '../../src/eval/engine-ort.js';
import { fileSha256, onnxCacheExports, onnxCacheKey } from '../../src/eval/onnx-cache.js';
import { MICRO_CONTEXT as L, MICRO_VOCAB as V, microConfig } from '../micro-config.js';

/** max|a − b| / max|b|. */
function relDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let d = 0;
  let r = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    r = Math.max(r, Math.abs(b[i]));
  }
  return d / r;
}

function tokens(n: number): Int32Array {
  const t = new Int32Array(n * L);
  for (let i = 0; i < n; i++) {
    t[i * L] = V - 2;
    for (let j = 1; j <= 1 + (i % 9); j++) t[i * L + j] = 1 + ((i * 7 + j * 13) % (V - 3));
    t[i * L + 2 + (i % 9)] = V - 1;
  }
  return t;
}

/** An identity layer no ONNX emitter knows (a plug-in's). */
class Unmapped extends Module {
  forward(x: tf.Tensor): tf.Tensor {
    return x.clone();
  }
}

describe('embedding engines', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mclip-engine-'));
  const root = join(dir, 'cache', 'onnx');
  const ckpt = join(dir, 'a.safetensors');
  let model: CLIP;
  let images: tf.Tensor4D;
  afterAll(() => {
    images?.dispose();
    model?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true, gradients: false });
    const m = new CLIP(microConfig(), { seed: 5 });
    saveModel(m, ckpt);
    m.dispose();
    model = (await loadModel(ckpt, { fused: true })).model;
    images = tf.randomUniform([64, 32, 32, 3], 0, 1, 'float32', 7) as tf.Tensor4D;
  });

  test('NHWC ↔ NCHW transposes are inverse and put channel c of pixel p at c·HW + p', () => {
    const x = Float32Array.from({ length: 2 * 3 * 4 * 5 }, (_, i) => i);
    const y = nhwcToNchw(x, 2, 4, 5);
    expect(y[1 * 20 + 7]).toBe(x[7 * 3 + 1]); // image 0, channel 1, pixel 7
    expect(y[60 + 2 * 20 + 19]).toBe(x[60 + 19 * 3 + 2]); // image 1, channel 2, last pixel
    expect(Array.from(nchwToNhwc(y, 2, 4, 5))).toEqual(Array.from(x));
  });

  test('ORT embeds 64 images and token rows as tfjs (≤ 1e-4 relative); the second open reuses the cache; another checkpoint gets its own entry', async () => {
    const before = onnxCacheExports();
    const first = await openEngine('ort', model, { checkpoint: ckpt, root });
    expect(first.engine).toBeInstanceOf(OrtEngine);
    expect(first.report).toMatchObject({ engine: 'ort', requested: 'ort', cache: 'created' });
    expect(first.report.verifyRelDiff!.image).toBeLessThanOrEqual(1e-4);
    expect(first.report.verifyRelDiff!.text).toBeLessThanOrEqual(1e-4);
    expect(first.line).toMatch(/^engine ort \(onnxruntime-node [\d.]+ CPU, 2 threads; exported, verified \(max rel\. diff [\d.e+-]+ ≤ 1e-4\) and cached in /);
    expect(onnxCacheExports()).toBe(before + 1);
    const key = onnxCacheKey(fileSha256(ckpt), model);
    expect(first.onnx!.dir).toBe(join(root, key.name));
    expect(key.name).toMatch(/^mobileclip_tiny_micro-[0-9a-f]{24}$/);
    expect(readdirSync(join(root, key.name)).sort()).toEqual(['entry.json', 'image.onnx', 'text.onnx']);
    const mtime = statSync(first.onnx!.image).mtimeMs;

    const tfjs = TfjsEngine.of(model);
    const pairs: Array<[Embeddings, Embeddings]> = [];
    try {
      const tensors = tf.memory().numTensors;
      pairs.push([await embedImages(first.engine, images, { batchSize: 32 }), await embedImages(model, images, { batchSize: 32 })]);
      expect(tf.memory().numTensors).toBe(tensors);
      pairs.push([await embedTokens(first.engine, tokens(64), L, { batchSize: 32, normalize: false }), await embedTokens(model, tokens(64), L, { batchSize: 32, normalize: false })]);
      // the tfjs engine (flat pixels in either layout) = the model
      const px = (await images.slice([0, 0, 0, 0], [4, 32, 32, 3]).data()) as Float32Array;
      const a = await tfjs.encodeImages(nhwcToNchw(px, 4, 32, 32), 4, 'nchw');
      const b = await first.engine.encodeImages(px, 4, 'nhwc');
      expect(relDiff(b, a)).toBeLessThanOrEqual(1e-4);
    } finally {
      await first.engine.dispose();
    }
    for (const [ort, ref] of pairs) {
      expect([ort.n, ort.dim]).toEqual([64, 64]);
      expect(relDiff(ort.data, ref.data)).toBeLessThanOrEqual(1e-4);
    }

    const second = await openEngine('ort', model, { checkpoint: ckpt, root });
    await second.engine.dispose();
    expect(second.report).toMatchObject({ engine: 'ort', cache: 'hit' });
    expect(second.report.verifyRelDiff).toBeUndefined();
    expect(second.line).toMatch(/; cached export .*mobileclip_tiny_micro-/);
    expect(onnxCacheExports()).toBe(before + 1);
    expect(statSync(second.onnx!.image).mtimeMs).toBe(mtime);

    const other = new CLIP(microConfig(), { seed: 6 });
    const ckpt2 = join(dir, 'b.safetensors');
    saveModel(other, ckpt2);
    try {
      const third = await openEngine('ort', other, { checkpoint: ckpt2, root });
      await third.engine.dispose();
      expect(third.report.cache).toBe('created');
      expect(third.onnx!.dir).not.toBe(first.onnx!.dir);
      expect(onnxCacheExports()).toBe(before + 2);
      expect(readdirSync(root).filter((n) => !n.startsWith('.')).length).toBe(2);
    } finally {
      other.dispose();
    }
  });

  test('fallbacks: onnxruntime-node not loadable, a layer without an emitter; each says why in one line and runs tfjs', async () => {
    const noOrt = await openEngine('ort', model, {
      checkpoint: ckpt,
      root,
      loadOrt: () => Promise.reject(new Error("Cannot find module 'onnxruntime-node'\nRequire stack: ...")),
    });
    expect(noOrt.engine).toBeInstanceOf(TfjsEngine);
    expect(noOrt.report).toMatchObject({ engine: 'tfjs', requested: 'ort', fallback: "Cannot find module 'onnxruntime-node'" });
    expect(noOrt.line).toBe("engine tfjs instead of ort: Cannot find module 'onnxruntime-node'");

    const m = new CLIP(microConfig(), { seed: 8 });
    const ckpt3 = join(dir, 'c.safetensors');
    saveModel(m, ckpt3);
    try {
      const img = m.imageEncoder.model;
      if (!(img instanceof FastViT)) throw new Error('expected an MCi tower');
      img.network.push(new Unmapped());
      const before = onnxCacheExports();
      const o = await openEngine('ort', m, { checkpoint: ckpt3, root });
      expect(o.engine).toBeInstanceOf(TfjsEngine);
      expect(o.report.fallback).toMatch(/^the model cannot be exported to ONNX: no ONNX mapping for module 'image\.network\.\d+' \(Unmapped; /);
      expect(o.line).not.toMatch(/\n/);
      expect(onnxCacheExports()).toBe(before);
      expect(readdirSync(root).filter((n) => n.startsWith('.'))).toEqual([]); // no temporary left
      // and the tfjs engine still embeds
      const e = await embedTokens(o.engine, tokens(3), L);
      expect(e.dim).toBe(64);
    } finally {
      m.dispose();
    }
    const asked = await openEngine('tfjs', model, { checkpoint: ckpt, root, tfjsDescription: 'tfjs wasm, 1 thread' });
    expect(asked.line).toBe('engine tfjs (tfjs wasm, 1 thread)');
    expect(asked.report).toEqual({ engine: 'tfjs', requested: 'tfjs', description: 'tfjs wasm, 1 thread' });
  });
});
