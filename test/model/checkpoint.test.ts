import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { CLIP } from '../../src/base/model/clip.js';
import { getConfig } from '../../src/base/model/configs.js';
import { loadModel, saveModel } from '../../src/base/model/checkpoint.js';
import { reparameterize } from '../../src/base/model/reparameterize.js';
import { readSafetensors } from '../../src/base/io/safetensors.js';

describe('our checkpoint format (safetensors + JSON config)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mclip-ckpt-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true, gradients: false });
  });

  test('unfused and fused models round-trip exactly, carry their config, and loading leaks no tensors', async () => {
    const cfg = getConfig('mobileclip_tiny');
    const model = new CLIP(cfg, { seed: 9 }).eval();
    const x = tf.randomUniform([2, 64, 64, 3], 0, 1, 'float32', 3);
    const tok = tf.tensor2d([[4094, 7, 8, 4095, ...new Array(73).fill(0)], [4094, 9, 4095, ...new Array(74).fill(0)]], [2, 77], 'int32');
    const ref = model.encodeImage(x);
    const refT = model.encodeText(tok);
    saveModel(model, join(dir, 'unfused.safetensors'));
    reparameterize(model);
    saveModel(model, join(dir, 'fused.safetensors'));
    const meta = readSafetensors(join(dir, 'fused.safetensors')).metadata;
    expect(meta['mclip.fused']).toBe('true');
    expect(JSON.parse(meta['mclip.config']!).name).toBe('mobileclip_tiny');
    for (const [file, fused] of [['unfused.safetensors', false], ['fused.safetensors', true]] as const) {
      const before = tf.memory().numTensors;
      const loaded = await loadModel(join(dir, file));
      expect(loaded.storedFused).toBe(fused);
      const y = loaded.model.encodeImage(x);
      const t = loaded.model.encodeText(tok);
      const d = tf.tidy(() => y.sub(ref).abs().max().div(ref.abs().max()).dataSync()[0]);
      const dt = tf.tidy(() => t.sub(refT).abs().max().div(refT.abs().max()).dataSync()[0]);
      expect(d).toBeLessThanOrEqual(fused ? 1e-4 : 0);
      expect(dt).toBeLessThanOrEqual(fused ? 1e-4 : 0);
      tf.dispose([y, t]);
      loaded.model.dispose();
      expect(tf.memory().numTensors).toBe(before);
    }
    tf.dispose([x, tok, ref, refT]);
    model.dispose();
  });
});
