import { afterAll, beforeAll, expect, test } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '../../src/base/backend/index.js';
import { loadModel } from '../../src/base/model/checkpoint.js';
import type { CLIP } from '../../src/base/model/clip.js';
import { toFloat32 } from '../../src/base/io/tensor-data.js';
import { exportOnnx } from '../../src/export/index.js';
import { fixture, describeFixtures } from '../paths.js';
import { readFixture, relErr } from '../model/helpers.js';
import { runOrtTowers } from './helpers.js';

const DIR = ['mobileclip2', 'mobileclip2_s0'] as const;

describeFixtures('ONNX export: MobileCLIP2-S0 fixture (open_clip layout, fused)', () => {
  let dir: string;
  let model: CLIP;

  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true, gradients: false });
    dir = mkdtempSync(join(tmpdir(), 'mclip-export-mc2-'));
    model = (await loadModel(fixture(...DIR, 'open_clip_model_fp16.safetensors'), { fused: true })).model;
  });
  afterAll(() => {
    model?.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  test('both towers in onnxruntime match tfjs and the fixture fused features', async () => {
    const path = join(dir, 'mc2-s0.onnx');
    const r = await exportOnnx(model, path, { tower: 'both', verifyBatch: 1 });
    expect(r.verify!.relDiff.image_features).toBeLessThanOrEqual(1e-4);
    expect(r.verify!.relDiff.text_features).toBeLessThanOrEqual(1e-4);
    const inputs = readFixture(...DIR, 'inputs.safetensors');
    const ref = readFixture(...DIR, 'outputs_fused.safetensors');
    const out = await runOrtTowers(path, inputs);
    const ei = relErr(toFloat32(ref.get('image_features')!), out.image.data);
    const et = relErr(toFloat32(ref.get('text_features')!), out.text.data);
    console.log(`MobileCLIP2-S0 ONNX: vs tfjs ${JSON.stringify(r.verify!.relDiff)}; vs fixture image_features ${ei.toExponential(2)}, text_features ${et.toExponential(2)}`);
    expect(ei, 'image_features').toBeLessThanOrEqual(1e-4);
    expect(et, 'text_features').toBeLessThanOrEqual(1e-4);
  });
});
