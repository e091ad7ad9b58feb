/**
 * The training half of bench/throughput: median step time of `mobileclip_tiny` at batch 32 (forward,
 * backward, AdamW; BatchNorm in train mode) with 1 and with N data-parallel ranks, in this process, on
 * synthetic batches (the data loader is not timed) — each alone, and paired (steps alternating) — and the PyTorch anchor (the official code, one CLIP
 * step of the same model) when ../shared/anchors and $REFSRC are set up.
 */
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '../src/base/tf.js';
import { CLIP } from '../src/base/model/clip.js';
import { getConfig, type ClipConfig } from '../src/base/model/configs.js';
import { Trainer } from '../src/base/train/trainer.js';
import { DataParallel } from '../src/base/train/parallel/data-parallel.js';
import type { TrainBatch } from '../src/base/train/loss-terms.js';

export interface StepTiming {
  ranks: number;
  medianMs: number;
  p90Ms: number;
  samplesPerSec: number;
}

function quantile(v: number[], q: number): number {
  const s = [...v].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

function syntheticBatch(b: number, size: number, context: number, vocab: number, step: number): TrainBatch {
  let s = 99 + step * 7919;
  const rnd = () => (s = (s * 1103515245 + 12345) % 2147483648) / 2147483648;
  const tokens = new Int32Array(b * context);
  for (let i = 0; i < b; i++) {
    const len = 5 + (i % 12);
    tokens[i * context] = vocab - 2;
    for (let j = 1; j < len; j++) tokens[i * context + j] = 1 + Math.floor(rnd() * (vocab - 3));
    tokens[i * context + len] = vocab - 1;
  }
  return { images: tf.tensor4d(Float32Array.from({ length: b * size * size * 3 }, rnd), [b, size, size, 3]), gtTokens: tf.tensor2d(tokens, [b, context], 'int32') };
}

/** ms of one trainer step on synthetic batch `i` (the batch is built before and freed after the timing). */
function timedStep(trainer: Trainer, cfg: ClipConfig, batch: number, i: number): number {
  const b = syntheticBatch(batch, cfg.image.imageSize, cfg.text.contextLength, cfg.text.vocabSize, i);
  const t0 = performance.now();
  trainer.step(b);
  const dt = performance.now() - t0;
  tf.dispose([b.images, b.gtTokens]);
  return dt;
}

/** Median / p90 step time over `steps` steps after `warmup` steps, with `ranks` data-parallel ranks. */
export async function timeTrainStep(ranks: number, o: { batch?: number; warmup?: number; steps?: number } = {}): Promise<StepTiming> {
  const batch = o.batch ?? 32;
  const cfg = getConfig('mobileclip_tiny');
  const model = new CLIP(cfg, { seed: 1 });
  let dp: DataParallel | null = null;
  if (ranks > 1) {
    const r = await DataParallel.start(model, { workers: ranks, maxBatch: batch, lambda: 0 });
    if (!r.dp) throw new Error(`data-parallel workers did not start: ${r.reason}`);
    dp = r.dp;
  }
  const warmup = o.warmup ?? 3;
  const steps = o.steps ?? 10;
  const trainer = new Trainer(model, { lr: 1e-3, totalSteps: warmup + steps, parallel: dp ?? undefined });
  const times: number[] = [];
  try {
    for (let i = 0; i < warmup + steps; i++) {
      const dt = timedStep(trainer, cfg, batch, i);
      if (i >= warmup) times.push(dt);
    }
  } finally {
    trainer.dispose();
    await dp?.dispose();
    model.dispose();
  }
  const med = quantile(times, 0.5);
  return { ranks, medianMs: med, p90Ms: quantile(times, 0.9), samplesPerSec: (1000 * batch) / med };
}

/**
 * 1 rank against `ranks` ranks, step by step: two trainers (each its own model from the same seed), whose
 * steps alternate (A B, then B A, …) on the same synthetic batches, so that the machine's drift hits both
 * alike. Returns each one's median step and the median of the per-step ratios (1-rank time / N-rank time).
 */
export async function pairedTrainSteps(ranks: number, o: { batch?: number; warmup?: number; steps?: number } = {}): Promise<{ one: StepTiming; many: StepTiming; medianRatio: number }> {
  const batch = o.batch ?? 32;
  const warmup = o.warmup ?? 3;
  const steps = o.steps ?? 20;
  const cfg = getConfig('mobileclip_tiny');
  const m1 = new CLIP(cfg, { seed: 1 });
  const mN = new CLIP(cfg, { seed: 1 });
  const r = await DataParallel.start(mN, { workers: ranks, maxBatch: batch, lambda: 0 });
  if (!r.dp) {
    m1.dispose();
    mN.dispose();
    throw new Error(`data-parallel workers did not start: ${r.reason}`);
  }
  const dp = r.dp;
  const t1 = new Trainer(m1, { lr: 1e-3, totalSteps: warmup + steps });
  const tN = new Trainer(mN, { lr: 1e-3, totalSteps: warmup + steps, parallel: dp });
  const a: number[] = [];
  const b: number[] = [];
  try {
    for (let i = 0; i < warmup + steps; i++) {
      const order: Array<[Trainer, number[]]> = i % 2 === 0 ? [[t1, a], [tN, b]] : [[tN, b], [t1, a]];
      for (const [t, out] of order) {
        const dt = timedStep(t, cfg, batch, i);
        if (i >= warmup) out.push(dt);
      }
    }
  } finally {
    t1.dispose();
    tN.dispose();
    await dp.dispose();
    m1.dispose();
    mN.dispose();
  }
  const timing = (v: number[], n: number): StepTiming => ({ ranks: n, medianMs: quantile(v, 0.5), p90Ms: quantile(v, 0.9), samplesPerSec: (1000 * batch) / quantile(v, 0.5) });
  return { one: timing(a, 1), many: timing(b, ranks), medianRatio: quantile(a.map((x, i) => x / b[i]!), 0.5) };
}

/** The PyTorch anchor's median step time (ms) at `threads` threads, or null with the reason. */
export function torchAnchor(threads: number, root: string): { medianMs: number | null; note: string } {
  const script = join(root, '..', 'shared', 'anchors', 'torch_train_step.py');
  if (!existsSync(script)) return { medianMs: null, note: `${script} not found` };
  if (!process.env.REFSRC) return { medianMs: null, note: 'REFSRC not set (see ../shared/anchors/README.md)' };
  const r = spawnSync('/usr/bin/python3', [script, '--threads', String(threads), '--runs', '10'], { encoding: 'utf8', timeout: 600_000 });
  const m = /train step median (\d+(?:\.\d+)?) ms/.exec(r.stdout ?? '');
  if (!m) return { medianMs: null, note: `the anchor printed no median (exit ${r.status}): ${(r.stderr ?? '').trim().split('\n').pop() ?? ''}` };
  return { medianMs: Number(m[1]), note: (r.stdout ?? '').trim().split('\n').pop() ?? '' };
}

/**
 * Two independent one-thread processes, each timing the train step at batch/2, started together: the
 * step time of the slower one (what two ranks could reach if the exchange cost nothing).
 */
export async function concurrentHalfSteps(batch = 32): Promise<{ medianMs: number; each: number[] }> {
  const entry = fileURLToPath(new URL('./throughput-solo.js', import.meta.url));
  const run = () =>
    new Promise<StepTiming>((ok, fail) => {
      const p = spawn(process.execPath, [entry, String(batch / 2)], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      p.stdout.on('data', (d: Buffer) => (out += d.toString()));
      p.on('error', fail);
      p.on('close', (code) => {
        const line = out.trim().split('\n').pop() ?? '';
        try {
          if (code !== 0) throw new Error(`exit ${code}`);
          ok(JSON.parse(line) as StepTiming);
        } catch (e) {
          fail(new Error(`throughput-solo: ${e instanceof Error ? e.message : String(e)}: ${line}`));
        }
      });
    });
  const both = await Promise.all([run(), run()]);
  const each = both.map((t) => t.medianMs);
  return { medianMs: Math.max(...each), each };
}
