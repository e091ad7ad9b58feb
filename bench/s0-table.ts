/**
 * bench/s0-table: MobileCLIP-S0 (fused) latency, tfjs (chosen backend) vs onnxruntime-node (the
 * exported, verified ONNX; 2 threads), image and text towers, batch 1 and 8; median / p90 of ≥ 30
 * timed runs after warm-up.
 *
 *   npm run build && node dist/bench/s0-table.js [--checkpoint S0.pt] [--backend wasm] [--runs 30]
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '../src/base/backend/index.js';
import { CLIP } from '../src/base/model/clip.js';
import { getConfig } from '../src/base/model/configs.js';
import { loadModel } from '../src/base/model/checkpoint.js';
import { reparameterize } from '../src/base/model/reparameterize.js';
import { measureLatency } from '../src/eval/index.js';
import { exportOnnx, ortLatency } from '../src/export/index.js';

function arg(name: string, def?: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : def;
}

async function main(): Promise<void> {
  const runs = Number(arg('runs', '30'));
  const info = await initBackend({ backend: arg('backend'), gradients: false });
  const ckpt = arg('checkpoint');
  const model = ckpt ? (await loadModel(ckpt, { arch: arg('arch', 'mobileclip_s0'), fused: true })).model : reparameterize(new CLIP(getConfig('mobileclip_s0')).eval());
  const tfjs = await measureLatency(model, { batch: 8, runs });
  const dir = mkdtempSync(join(tmpdir(), 'mclip-bench-'));
  const onnx = join(dir, 's0.onnx');
  const rep = await exportOnnx(model, onnx, { tower: 'both' });
  const rows: string[] = [];
  const fmt = (m: number, p: number) => `${m.toFixed(1)} (${p.toFixed(1)})`;
  for (const tower of ['image', 'text'] as const) {
    for (const b of [1, 8]) {
      const t = tfjs[tower][b === 1 ? 'b1' : 'bN'];
      const o = await ortLatency(onnx, tower, { batch: b, runs, threads: 2 });
      rows.push(`| ${tower} | ${b} | ${fmt(t.medianMs, t.p90Ms)} | ${fmt(o.medianMs, o.p90Ms)} |`);
    }
  }
  rmSync(dir, { recursive: true, force: true });
  console.log(`S0 fused; tfjs ${info.name} (${info.threads} thread) vs onnxruntime-node CPU (2 threads); ms median (p90), ${runs} runs; ONNX ${(rep.bytes / 2 ** 20).toFixed(1)} MiB`);
  console.log('| tower | batch | tfjs | onnxruntime |');
  console.log('|---|---|---|---|');
  for (const r of rows) console.log(r);
  model.dispose();
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : String(e));
  process.exit(1);
});
