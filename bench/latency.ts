/**
 * bench/latency: MobileCLIP-S0 image- and text-encoder latency (fused, batch 1, median of ≥ 20
 * runs after warm-up) and the mobileclip_tiny training-step time, on the chosen backend.
 *
 *   npm run build && node dist/bench/latency.js [--checkpoint S0.pt] [--backend wasm] [--runs 30]
 *
 * Without --checkpoint the S0 architecture runs with random weights (latency does not depend on
 * the values). Prints a table and one JSON line.
 */
import * as tf from '../src/base/tf.js';
import { initBackend } from '../src/base/backend/index.js';
import { CLIP } from '../src/base/model/clip.js';
import { getConfig } from '../src/base/model/configs.js';
import { loadModel } from '../src/base/model/checkpoint.js';
import { reparameterize } from '../src/base/model/reparameterize.js';
import { AdamW } from '../src/base/train/adamw.js';
import { trainStep } from '../src/base/train/step.js';

function arg(name: string, def?: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : def;
}

function stats(ms: number[]): { median: number; p90: number; min: number } {
  const s = [...ms].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * (s.length - 1) + 0.5))];
  return { median: q(0.5), p90: q(0.9), min: s[0] };
}

async function time(fn: () => tf.Tensor | number, runs: number, warmup: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < warmup + runs; i++) {
    const t0 = performance.now();
    const r = fn();
    if (typeof r !== 'number') {
      await r.data();
      r.dispose();
    }
    const dt = performance.now() - t0;
    if (i >= warmup) out.push(dt);
  }
  return out;
}

async function main(): Promise<void> {
  const runs = Number(arg('runs', '30'));
  const info = await initBackend({ backend: arg('backend'), gradients: true });
  const ckpt = arg('checkpoint');
  const model = ckpt ? (await loadModel(ckpt, { arch: arg('arch', 'mobileclip_s0'), fused: true })).model : reparameterize(new CLIP(getConfig('mobileclip_s0')).eval());
  const size = model.cfg.image.imageSize;
  const img = tf.randomUniform([1, size, size, 3]);
  const tok = tf.tensor2d([[49406, 320, 1929, 49407, ...new Array(73).fill(0)]], [1, 77], 'int32');
  const tokClamped = tf.minimum(tok, model.cfg.text.vocabSize - 1);
  const imgMs = stats(await time(() => model.encodeImage(img), runs, 5));
  const txtMs = stats(await time(() => model.encodeText(tokClamped), runs, 5));
  model.dispose();

  const tiny = new CLIP(getConfig('mobileclip_tiny'), { seed: 1 }).train();
  const opt = new AdamW(tiny, { lr: 1e-3, weightDecay: 0.1 });
  const batch = Number(arg('batch', '32'));
  const tImg = tf.randomUniform<tf.Rank.R4>([batch, 64, 64, 3], 0, 1, 'float32', 3);
  const tTok = tf.randomUniform<tf.Rank.R2>([batch, 77], 0, 4000, 'int32', 4);
  const before = tf.memory().numTensors;
  const stepMs = stats(await time(() => trainStep(tiny, opt, { images: tImg, gtTokens: tTok }, { gradClip: 1 }).loss, 10, 2));
  const leaked = tf.memory().numTensors - before;
  const row = {
    backend: info.name,
    package: info.package,
    threads: info.threads,
    s0_image_ms: +imgMs.median.toFixed(2),
    s0_image_p90_ms: +imgMs.p90.toFixed(2),
    s0_text_ms: +txtMs.median.toFixed(2),
    s0_text_p90_ms: +txtMs.p90.toFixed(2),
    tiny_train_step_ms: +stepMs.median.toFixed(1),
    tiny_batch: batch,
    tensors_leaked_per_10_steps: leaked,
    runs,
  };
  console.log(`backend ${info.name} (${info.package}, ${info.threads} thread${info.threads === 1 ? '' : 's'})`);
  console.log(`S0 image encoder (fused, 1×3×${size}×${size}): median ${row.s0_image_ms} ms, p90 ${row.s0_image_p90_ms} ms`);
  console.log(`S0 text encoder  (fused, 1×77):           median ${row.s0_text_ms} ms, p90 ${row.s0_text_p90_ms} ms`);
  console.log(`mobileclip_tiny train step (batch ${batch}, AdamW): median ${row.tiny_train_step_ms} ms`);
  console.log(JSON.stringify(row));
  tf.dispose([img, tok, tokClamped, tImg, tTok]);
  opt.dispose();
  tiny.dispose();
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : String(e));
  process.exit(1);
});
