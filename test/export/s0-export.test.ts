import { expect, test } from 'vitest';
import { join } from 'node:path';
import { toFloat32 } from '../../src/base/io/tensor-data.js';
import { exportOnnx } from '../../src/export/index.js';
import { fixture, describeFixtures } from '../paths.js';
import { readFixture, relErr } from '../model/helpers.js';
import { runOrtTowers, s0Fixture } from './helpers.js';

describeFixtures('ONNX export: MobileCLIP-S0 fixture (fused)', () => {
  const s0 = s0Fixture('mclip-export-s0-', { fused: true });

  test('both towers: verified against tfjs, and onnxruntime matches the fixture references', async () => {
    const path = join(s0.dir, 's0.onnx');
    const r = await exportOnnx(s0.model, path, { tower: 'both', verifyBatch: 1 });
    expect(r.verify!.relDiff.image_features).toBeLessThanOrEqual(1e-4);
    expect(r.verify!.relDiff.text_features).toBeLessThanOrEqual(1e-4);
    const inputs = readFixture('mobileclip_s0', 'inputs.safetensors');
    const ref = readFixture('mobileclip_s0', 'outputs_fused.safetensors');
    const out = await runOrtTowers(path, inputs);
    const ei = relErr(toFloat32(ref.get('image.embed')!), out.image.data);
    const et = relErr(toFloat32(ref.get('text.embed')!), out.text.data);
    console.log(`S0 ONNX: vs tfjs ${JSON.stringify(r.verify!.relDiff)}; vs fixture image.embed ${ei.toExponential(2)}, text.embed ${et.toExponential(2)}`);
    expect(ei, 'image.embed').toBeLessThanOrEqual(1e-4);
    expect(et, 'text.embed').toBeLessThanOrEqual(1e-4);
  });
});
