/**
 * ORT latency of the exported S0 (fused) towers. Opt-in (slow, and only meaningful on a quiet
 * machine): MCLIP_BENCH=1 npx vitest run test/export/latency.test.ts
 * MCLIP_BENCH_DIR keeps the exported files (default: a temp folder); MCLIP_BENCH_OPSET (17).
 */
import { describe, expect, test } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '../../src/base/backend/index.js';
import { loadModel } from '../../src/base/model/checkpoint.js';
import { exportOnnx, ortLatency } from '../../src/export/index.js';
import { describeFixtures, fixture } from '../paths.js';

// A benchmark: runs with MCLIP_BENCH=1 (then a missing fixtures folder is a loud skip).
const describeBench = process.env.MCLIP_BENCH ? describeFixtures : (name: string, fn: () => void) => describe.skip(name, fn);
describeBench('ORT latency, S0 fused', () => {
  test('image / text towers, batch 1 and 8, 2 threads', async () => {
    const dir = process.env.MCLIP_BENCH_DIR ?? mkdtempSync(join(tmpdir(), 'mclip-bench-'));
    mkdirSync(dir, { recursive: true });
    const files = { image: join(dir, 's0_image.onnx'), text: join(dir, 's0_text.onnx') };
    if (!existsSync(files.image) || !existsSync(files.text)) {
      await initBackend({ backend: 'wasm', quiet: true, gradients: false });
      const { model } = await loadModel(fixture('mobileclip_s0', 'model_fp16.pt'), { arch: 'mobileclip_s0', fused: true });
      const opset = Number(process.env.MCLIP_BENCH_OPSET ?? 17);
      await exportOnnx(model, files.image, { tower: 'image', verifyBatch: 1, opset });
      await exportOnnx(model, files.text, { tower: 'text', verifyBatch: 1, opset });
      model.dispose();
    }
    const runs = Number(process.env.MCLIP_BENCH_RUNS ?? 50);
    const rows: string[] = [];
    for (const tower of ['image', 'text'] as const) {
      for (const batch of [1, 8]) {
        const r = await ortLatency(files[tower], tower, { batch, runs, warmup: 10, threads: 2 });
        rows.push(`${tower} batch ${batch}: median ${r.medianMs.toFixed(2)} ms, p90 ${r.p90Ms.toFixed(2)} ms, min ${r.minMs.toFixed(2)} ms (${r.runs} runs)`);
        expect(r.medianMs).toBeGreaterThan(0);
      }
    }
    console.log(rows.join('\n'));
  }, 600_000);
});
