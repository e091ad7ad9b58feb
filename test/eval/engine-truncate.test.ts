/**
 * The ORT engine on a `truncate` export (issue 12): the cached text tower has a dynamic sequence axis, the
 * engine cuts each batch to its longest row, and the embeddings equal the tfjs tower with the `truncate`
 * policy batch by batch (≤ 1e-4 on a micro `mct` tower, where truncation is approximate and so depends on the
 * batch); the policy keys its own cache entry, and the as-trained key is the one it always was.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '../../src/base/backend/index.js';
import { CLIP } from '../../src/base/model/clip.js';
import { loadModel, saveModel } from '../../src/base/model/checkpoint.js';
import { decodeModel, textPaddingOf } from '../../src/export/index.js';
import { embedTokens } from '../../src/eval/embed.js';
import { openEngine, OrtEngine } from '../../src/eval/engine-ort.js';
import { fileSha256, onnxCacheKey } from '../../src/eval/onnx-cache.js';
import { applyTextPadding } from '../../src/prune/padding.js';
import { MICRO_CONTEXT as L, MICRO_VOCAB as V, microConfig } from '../micro-config.js';
import { relErr } from '../model/helpers.js';

/** n rows, row i with 1 + (i % 5) words (EOT at 2 + i % 5), then row-dependent long ones every 7th. */
function tokens(n: number): Int32Array {
  const t = new Int32Array(n * L);
  for (let i = 0; i < n; i++) {
    const words = i % 7 === 6 ? 8 + (i % 5) : 1 + (i % 5);
    t[i * L] = V - 2;
    for (let j = 1; j <= words; j++) t[i * L + j] = 1 + ((i * 7 + j * 13) % (V - 3));
    t[i * L + words + 1] = V - 1;
  }
  return t;
}

describe('ORT engine, truncate export', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mclip-engine-truncate-'));
  const root = join(dir, 'cache', 'onnx');
  const ckpt = join(dir, 'mct.safetensors');
  let model: CLIP;
  afterAll(() => {
    model?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true, gradients: false });
    const m = new CLIP(microConfig('mobileclip_tiny'), { seed: 8 });
    saveModel(m, ckpt);
    m.dispose();
    model = (await loadModel(ckpt, { fused: true })).model;
  });

  test('embeds as tfjs with truncate, batch by batch (mct micro ≤ 1e-4); own cache entry; as-trained key unchanged', async () => {
    const sha = fileSha256(ckpt);
    expect(onnxCacheKey(sha, model, { textPadding: 'as-trained' }).key).toBe(onnxCacheKey(sha, model).key);
    const key = onnxCacheKey(sha, model, { textPadding: 'truncate' });
    expect(key.key).not.toBe(onnxCacheKey(sha, model).key);
    expect(key.material.textPadding).toBe('truncate');

    const opened = await openEngine('ort', model, { checkpoint: ckpt, root, textPadding: 'truncate' });
    const ids = tokens(24);
    let got: Float32Array;
    try {
      expect(opened.engine).toBeInstanceOf(OrtEngine);
      expect(opened.report).toMatchObject({ engine: 'ort', cache: 'created' });
      expect(opened.onnx!.dir).toBe(join(root, key.name));
      expect((opened.engine as OrtEngine).truncatesText).toBe(true);
      expect(opened.engine.description).toMatch(/text truncated per batch/);
      expect(textPaddingOf(decodeModel(readFileSync(opened.onnx!.text)).metadataProps)).toBe('truncate');
      // batches of 8: their longest rows are 11, 13 and 10 slots
      got = (await embedTokens(opened.engine, ids, L, { batchSize: 8, normalize: false })).data;
    } finally {
      await opened.engine.dispose();
    }
    const full = (await embedTokens(model, ids, L, { batchSize: 8, normalize: false })).data;
    const h = applyTextPadding(model.textEncoder, 'truncate');
    let ref: Float32Array;
    try {
      ref = (await embedTokens(model, ids, L, { batchSize: 8, normalize: false })).data;
    } finally {
      h.remove();
    }
    const e = relErr(ref, got);
    console.log(`ORT engine (truncate export) vs tfjs truncate, mct micro, 3 batches of 8: ${e.toExponential(2)} (truncate vs as-trained: ${relErr(full, ref).toExponential(2)})`);
    expect(e).toBeLessThanOrEqual(1e-4);
    expect(relErr(full, ref)).toBeGreaterThan(1e-4);

    // the dynamic-axis text file needs the rows' width
    await expect(OrtEngine.open({ image: opened.onnx!.image, text: opened.onnx!.text })).rejects.toThrow(/the token axis is dynamic \('truncate' export\); the engine needs the context length/);
  });
});
