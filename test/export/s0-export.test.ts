import { expect, test } from 'vitest';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { toFloat32 } from '../../src/base/io/tensor-data.js';
import { exportOnnx } from '../../src/export/index.js';
import { fixture, describeFixtures } from '../paths.js';
import { readFixture, relErr } from '../model/helpers.js';
import { s0Fixture } from './helpers.js';

describeFixtures('ONNX export: MobileCLIP-S0 fixture (fused)', () => {
  const s0 = s0Fixture('mclip-export-s0-', { fused: true });

  test('both towers: verified against tfjs, and onnxruntime matches the fixture references', async () => {
    const path = join(s0.dir, 's0.onnx');
    const r = await exportOnnx(s0.model, path, { tower: 'both', verifyBatch: 1 });
    expect(r.verify!.relDiff.image_features).toBeLessThanOrEqual(1e-4);
    expect(r.verify!.relDiff.text_features).toBeLessThanOrEqual(1e-4);
    const inputs = readFixture('mobileclip_s0', 'inputs.safetensors');
    const ref = readFixture('mobileclip_s0', 'outputs_fused.safetensors');
    const img = inputs.get('image')!;
    const tok = inputs.get('tokens')!;
    const s = await ort.InferenceSession.create(path, { intraOpNumThreads: 2 });
    try {
      const out = await s.run({
        image: new ort.Tensor('float32', toFloat32(img), img.shape),
        tokens: new ort.Tensor('int64', BigInt64Array.from(tok.data as Int32Array, (v) => BigInt(v)), tok.shape),
      });
      const ei = relErr(toFloat32(ref.get('image.embed')!), out.image_features.data as Float32Array);
      const et = relErr(toFloat32(ref.get('text.embed')!), out.text_features.data as Float32Array);
      console.log(`S0 ONNX: vs tfjs ${JSON.stringify(r.verify!.relDiff)}; vs fixture image.embed ${ei.toExponential(2)}, text.embed ${et.toExponential(2)}`);
      expect(ei, 'image.embed').toBeLessThanOrEqual(1e-4);
      expect(et, 'text.embed').toBeLessThanOrEqual(1e-4);
    } finally {
      await s.release();
    }
  });
});
