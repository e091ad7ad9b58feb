import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Argv } from 'yargs';
import { withOptions, type OptionTable } from '../options.js';
import * as tf from '../../base/tf.js';
import { MclipError } from '../../errors.js';
import { CLIP } from '../../base/model/clip.js';
import { getConfig } from '../../base/model/configs.js';
import { loadModel, saveModel } from '../../base/model/checkpoint.js';
import { ClipTokenizer, resolveVocabDir } from '../../base/tokenizer/index.js';
import { ImageTextLoop, ReinforcedLoop, type DataPosition } from '../../base/train/data-loop.js';
import { preprocessFor } from '../../base/model/preprocess-table.js';
import { readShards } from '../../base/data/index.js';
import { Trainer, resolveTrainState, truncateMetrics } from '../../base/train/trainer.js';
import { DataParallel } from '../../base/train/parallel/data-parallel.js';
import { availableParallelism } from 'node:os';
import { etaSeconds, formatDuration, startProgress } from '../progress.js';
import { startBackend, type GlobalArgs } from '../run.js';
import { heldByFoldCaches } from '../../base/nn/fold-cache.js';

export interface TrainArgs extends GlobalArgs {
  data: string;
  split: string;
  arch?: string;
  workers?: number;
  init?: string;
  vocab?: string;
  out: string;
  steps: number;
  batch: number;
  lr: number;
  warmup: number;
  wd: number;
  lambda: number;
  saveEvery: number;
  resume: boolean;
  force: boolean;
  seed: number;
  limit?: number;
  stopAfter?: number;
}

/** True when the split holds reinforced (DataCompDR-style) samples: an `npz` member with teacher embeddings. */
async function isReinforced(dir: string, split: string): Promise<boolean> {
  const source = existsSync(join(dir, split)) ? join(dir, split) : dir;
  for await (const s of readShards(source)) return s.members.has('npz');
  return false;
}

/** What in a run folder marks it as holding a run already. */
const RUN_FILES = ['metrics.jsonl', 'checkpoints', 'model.safetensors'] as const;

/** Refuses to train into a folder that holds a run unless --resume or --force says what to do with it; --force clears it. */
function prepareOut(args: TrainArgs): void {
  if (args.resume && args.force) throw new MclipError('--resume and --force exclude each other: --resume continues the run in --out, --force deletes it and starts over');
  const found = RUN_FILES.filter((f) => existsSync(join(args.out, f)));
  if (found.length === 0) return;
  if (args.force) {
    for (const f of found) rmSync(join(args.out, f), { recursive: true, force: true });
    console.error(`mclip: --force: removed the previous run's ${found.join(', ')} from ${args.out}`);
    return;
  }
  if (!args.resume) {
    throw new MclipError(`${args.out} already holds a run (${found.join(', ')}): continue it with --resume, or start over with --force (deletes them)`);
  }
}

/** Seconds per step measured over the steps after the first (which carries one-off warm-up work). */
class StepClock {
  private first: number | null = null;
  private firstStep = 0;
  private announced = false;

  /** Call after each step; returns the one-time estimate line once `settle` steps after the first are timed. */
  tick(step: number, total: number, settle = 3): string | null {
    const now = performance.now();
    if (this.first === null) {
      this.first = now;
      this.firstStep = step;
      return null;
    }
    if (this.announced || step - this.firstStep < settle) return null;
    this.announced = true;
    const perStep = (now - this.first) / 1000 / (step - this.firstStep);
    const left = perStep * (total - step);
    const done = new Date(Date.now() + left * 1000);
    const hhmm = `${String(done.getHours()).padStart(2, '0')}:${String(done.getMinutes()).padStart(2, '0')}`;
    return `mclip: ${perStep.toFixed(2)} s/step over steps ${this.firstStep + 1}–${step} → the remaining ${total - step} steps take about ${formatDuration(left)} (done about ${hhmm})`;
  }
}

function positiveInt(v: number, flag: string): void {
  if (!Number.isInteger(v) || v < 1) throw new MclipError(`${flag} must be a positive integer, got ${v}`);
}

const DEFAULT_ARCH = 'mobileclip_tiny';

export async function runTrain(args: TrainArgs): Promise<void> {
  positiveInt(args.steps, '--steps');
  positiveInt(args.batch, '--batch');
  if (args.workers !== undefined) positiveInt(args.workers, '--workers');
  if (!(args.lr > 0)) throw new MclipError(`--lr must be > 0, got ${args.lr}`);
  if (!(args.lambda >= 0 && args.lambda <= 1)) throw new MclipError(`--lambda must be in [0, 1], got ${args.lambda}`);
  if (!existsSync(args.data)) throw new MclipError(`${args.data}: data folder not found (build one with 'mclip data emoji --out ${args.data}')`);
  const tokenizer = ClipTokenizer.fromDir(resolveVocabDir(args.vocab));
  prepareOut(args);
  await startBackend(args, { gradients: true });

  let model: CLIP;
  const ckptRoot = join(args.out, 'checkpoints');
  if (args.resume && existsSync(join(ckptRoot, 'latest'))) {
    // The run's own checkpoint fixes the structure (a pruned or inherited model included); resume loads its weights.
    model = (await loadModel(join(resolveTrainState(ckptRoot), 'model.safetensors'))).model;
  } else if (args.init) {
    model = (await loadModel(args.init, { arch: args.arch })).model;
  } else {
    const cfg = getConfig(args.arch ?? DEFAULT_ARCH);
    cfg.text.vocabSize = tokenizer.vocabSize;
    model = new CLIP(cfg, { seed: args.seed });
  }
  if (model.cfg.text.vocabSize !== tokenizer.vocabSize) {
    throw new MclipError(`model text vocabulary ${model.cfg.text.vocabSize} ≠ tokenizer's ${tokenizer.vocabSize}`);
  }
  mkdirSync(args.out, { recursive: true });
  const ckptDir = join(args.out, 'checkpoints');
  const reinforced = await isReinforced(args.data, args.split);
  if (args.lambda > 0 && !reinforced) {
    throw new MclipError(`${args.data}: --lambda ${args.lambda} needs reinforced shards with stored teacher embeddings (build them with 'mclip reinforce')`);
  }
  const loadOpts = { seed: args.seed, limit: args.limit, preprocess: preprocessFor(model.cfg) };
  const loop = reinforced
    ? await ReinforcedLoop.load(args.data, args.split, model.cfg.image.imageSize, loadOpts)
    : await ImageTextLoop.load(args.data, args.split, model.cfg.image.imageSize, loadOpts);
  const workers = resolveWorkers(args.workers, args.batch);
  let parallel: DataParallel | null = null;
  if (workers > 1) {
    const r = await DataParallel.start(model, { workers, maxBatch: args.batch, lambda: args.lambda, teachers: loop instanceof ReinforcedLoop ? loop.teachers : undefined });
    parallel = r.dp;
    if (!parallel && !args.quiet) console.error(`mclip: training on 1 worker: ${r.reason}`);
  }
  if (!args.quiet && (parallel || workers === 1)) {
    console.error(`mclip: training on ${parallel ? `${workers} workers (this thread + ${workers - 1} worker thread${workers > 2 ? 's' : ''}, data-parallel; per-worker BatchNorm statistics)` : '1 worker'}`);
  }
  const trainer = new Trainer(model, {
    parallel: parallel ?? undefined,
    lr: args.lr,
    totalSteps: args.steps,
    warmup: args.warmup,
    weightDecay: args.wd,
    lambda: args.lambda,
    teachers: loop instanceof ReinforcedLoop ? loop.teachers : undefined,
    seed: args.seed,
    metricsPath: join(args.out, 'metrics.jsonl'),
    checkpointDir: ckptDir,
    saveEvery: args.saveEvery,
  });
  try {
    const metricsPath = join(args.out, 'metrics.jsonl');
    if (args.resume && existsSync(join(ckptDir, 'latest'))) {
      const meta = await trainer.resume(ckptDir);
      if (meta.data) loop.position = meta.data as DataPosition;
      console.error(`mclip: resumed at step ${trainer.stepCount} (epoch ${loop.position.epoch}, sample ${loop.position.index})`);
    } else if (args.resume) {
      truncateMetrics(metricsPath, 0);
      console.error(`mclip: nothing to resume in ${ckptDir}; starting at step 0`);
    }
    const kind = loop instanceof ReinforcedLoop ? `reinforced (${loop.teachers.length} teacher${loop.teachers.length === 1 ? '' : 's'}, λ = ${args.lambda})` : 'plain';
    console.error(`mclip: training ${model.cfg.name} on ${loop.length} ${kind} samples, batch ${args.batch}, ${args.steps} steps`);
    const tty = Boolean(process.stderr.isTTY);
    const startStep = trainer.stepCount;
    const bar = tty ? startProgress({ label: 'train', total: args.steps, start: startStep, unit: 'steps', quiet: args.quiet, tty: true }) : null;
    const clock = new StepClock();
    const t0 = performance.now();
    const before = tf.memory().numTensors - heldByFoldCaches();
    const stopAt = Math.min(args.steps, args.stopAfter ?? args.steps);
    while (trainer.stepCount < stopAt) {
      const batch = loop.next(args.batch, tokenizer, model.cfg.text.contextLength);
      trainer.dataState = loop.position;
      try {
        const m = trainer.step(batch);
        const info = `loss ${m.loss.toFixed(4)} | lr ${m.lr.toExponential(2)} | ${m.samplesPerSec.toFixed(1)} samples/s`;
        const estimate = clock.tick(m.step, stopAt);
        if (estimate && !args.quiet) {
          if (bar) process.stderr.write('\n');
          console.error(estimate);
        }
        if (bar) bar.update(m.step, info);
        else if (!args.quiet && (m.step % 10 === 0 || m.step === stopAt)) {
          const elapsed = (performance.now() - t0) / 1000;
          const eta = formatDuration(etaSeconds(elapsed, m.step, startStep, stopAt));
          console.error(`mclip: step ${m.step}/${args.steps} ${info} | ${formatDuration(elapsed)} elapsed | eta ${eta}`);
        }
      } finally {
        tf.dispose([batch.images, batch.gtTokens, ...(batch.synTokens ? [batch.synTokens] : [])]);
      }
    }
    bar?.stop();
    if (stopAt < args.steps) {
      trainer.checkpoint();
      console.error(`mclip: stopped after step ${stopAt} of ${args.steps}; continue with --resume`);
      return;
    }
    const leaked = tf.memory().numTensors - heldByFoldCaches() - before;
    if (leaked !== 0) console.error(`mclip: warning: tensor count changed by ${leaked} during training`);
    trainer.checkpoint();
    model.eval();
    saveModel(model, join(args.out, 'model.safetensors'));
    console.error(`mclip: wrote ${join(args.out, 'model.safetensors')} and ${join(args.out, 'metrics.jsonl')}`);
  } finally {
    trainer.dispose();
    await parallel?.dispose();
    model.dispose();
  }
}

/** Rows per rank the default worker count keeps at least (each rank's BatchNorm sees only its own rows). */
export const MIN_ROWS_PER_WORKER = 8;

/**
 * Ranks for data-parallel training: --workers, else $MCLIP_WORKERS, else the number of cores but no more
 * than leave MIN_ROWS_PER_WORKER rows to each (BatchNorm statistics of fewer rows get noisy); always at
 * most the batch (each rank needs a row).
 */
export function resolveWorkers(flag: number | undefined, batch: number): number {
  const env = process.env.MCLIP_WORKERS;
  let n: number;
  if (flag !== undefined) n = flag;
  else if (env !== undefined && env !== '') {
    n = Number(env);
    if (!Number.isInteger(n) || n < 1) throw new MclipError(`MCLIP_WORKERS must be a positive integer, got '${env}'`);
  } else n = Math.min(availableParallelism(), Math.floor(batch / MIN_ROWS_PER_WORKER));
  return Math.max(1, Math.min(n, batch));
}

export const TRAIN_OPTIONS = {
  data: { type: 'string', demandOption: true, describe: 'dataset folder (mclip data …)' },
  split: { type: 'string', default: 'train', describe: 'split folder inside --data' },
  workers: { type: 'number', describe: `data-parallel ranks: this thread + worker threads (default $MCLIP_WORKERS, else the number of cores, but at least ${MIN_ROWS_PER_WORKER} rows of --batch per rank; at most --batch)` },
  arch: { type: 'string', describe: `architecture of a new model (default ${DEFAULT_ARCH}); with --init, the architecture the checkpoint must fit` },
  init: { type: 'string', describe: 'start from this checkpoint instead of a random model' },
  vocab: { type: 'string', describe: 'tokenizer folder (else $MCLIP_VOCAB); sets the text vocabulary of a new model' },
  out: { type: 'string', demandOption: true, describe: 'run folder: checkpoints/, metrics.jsonl, model.safetensors' },
  steps: { type: 'number', default: 1000, describe: 'optimiser steps' },
  batch: { type: 'number', default: 32, describe: 'batch size' },
  lr: { type: 'number', default: 1e-3, describe: 'peak learning rate' },
  warmup: { type: 'number', default: 0, describe: 'warm-up steps' },
  wd: { type: 'number', default: 0.2, describe: 'AdamW weight decay (not on norms, biases, logit scale)' },
  lambda: { type: 'number', default: 0, describe: 'distillation weight λ: L = (1−λ)·L_CLIP + λ·L_distill (needs reinforced shards; 0 = plain CLIP)' },
  'save-every': { type: 'number', default: 100, describe: 'checkpoint every N steps' },
  resume: { type: 'boolean', default: false, describe: 'continue from the latest checkpoint in --out' },
  force: { type: 'boolean', default: false, describe: 'delete the run already in --out (checkpoints, metrics, model) and start over' },
  seed: { type: 'number', default: 0, describe: 'seed of the init, data order and caption sampling' },
  limit: { type: 'number', describe: 'use the first N samples' },
  'stop-after': { type: 'number', describe: 'checkpoint and stop after this step (the schedule still spans --steps); continue with --resume' },
} as const satisfies OptionTable;

export function trainCommand(y: Argv): Argv {
  return y.command<TrainArgs>(
    'train',
    'CLIP training (AdamW, warm-up + cosine) on image–text shards, with atomic checkpoints and --resume',
    (a) =>
      withOptions(a, TRAIN_OPTIONS) as unknown as Argv<TrainArgs>,
    (args) => runTrain(args),
  );
}
