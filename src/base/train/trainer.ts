import { appendFileSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import * as tf from '../tf.js';
import { MclipError } from '../../errors.js';
import type { CLIP } from '../model/clip.js';
import { saveModel, readCheckpointFile } from '../model/checkpoint.js';
import { loadStateDict } from '../model/state-dict.js';
import { readSafetensors, writeSafetensors } from '../io/safetensors.js';
import { toFloat32, type StateDict } from '../io/tensor-data.js';
import { AdamW, MODEL_GROUP, openClipExclude, type ParamGroup } from './adamw.js';
import type { TeacherSpec } from './distill-loss.js';
import { reinforcedTerms, type LossTerm, type TrainBatch } from './loss-terms.js';
import { cosineLr } from './schedule.js';
import { trainStep, type GradientSource } from './step.js';
import { freezeBatchNorm } from './freeze-batch-norm.js';
import { mulberry32Step } from '../random.js';

export type { TrainBatch } from './loss-terms.js';

/** A small seeded generator (mulberry32) whose whole state is one uint32, saved with checkpoints. */
export class Rng {
  state: number;

  constructor(seed = 0) {
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    const [next, value] = mulberry32Step(this.state);
    this.state = next;
    return value;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
}

export interface TrainerOptions {
  /** Peak learning rate (MobileCLIP: 1e-3). */
  lr: number;
  /** Total optimiser steps (cosine reaches 0 there). */
  totalSteps: number;
  /** Warm-up steps (MobileCLIP: 1000). Default 0. */
  warmup?: number;
  beta1?: number;
  /** Default 0.95 (MobileCLIP). */
  beta2?: number;
  eps?: number;
  /** Default 0.2 (MobileCLIP); not applied to norms, biases, logit scale (open_clip rule). */
  weightDecay?: number;
  /** Global gradient-norm clip of the model's parameters (not of extra groups); default 1.0; 0 disables. */
  gradClip?: number;
  /** KD weight λ of the default loss list `reinforcedTerms(λ)`; default 1 when teachers are given, else 0. Unused with `losses`. */
  lambda?: number;
  /**
   * Named loss terms; the step minimises Σ weight·term and logs each term under its name. Default
   * `reinforcedTerms(lambda)` = [contrastive (1 − λ), distill (λ)], which equals `reinforcedLoss`.
   * A plug-in adds a term with `losses: [...reinforcedTerms(λ), myTerm]`.
   */
  losses?: readonly LossTerm[];
  /**
   * Optimiser groups beside the model's parameters (which keep the warm-up + cosine lr, `weightDecay`
   * with the open_clip no-decay rule and gradient clipping). An extra group's lr is constant unless it
   * says `schedule: true` (then lr × the step's warm-up + cosine factor); its gradients are never clipped; its variables
   * and moments are saved with checkpoints and restored by `resume`.
   */
  paramGroups?: readonly ParamGroup[];
  /**
   * Where each step's loss and gradients come from: data-parallel workers (`DataParallel.start`), or this
   * thread when absent. Data-parallel steps support the default loss list and the model's own parameters only.
   */
  parallel?: GradientSource;
  /** Train with every BatchNorm in eval mode (frozen running statistics). Default false. */
  freezeBatchNorm?: boolean;
  /** Teachers (widths and inverse temperatures) of the stored features. */
  teachers?: readonly TeacherSpec[];
  /** Seed of the trainer's Rng (for data-side sampling by the caller). Default 0. */
  seed?: number;
  /** Metrics JSONL file (one line per step); omitted → no file. */
  metricsPath?: string;
  /** Checkpoint root: `<dir>/step-<n>` plus a `latest` pointer; with `saveEvery`. */
  checkpointDir?: string;
  /** Save every N steps (needs checkpointDir). 0/undefined: never automatically. */
  saveEvery?: number;
  /** Keep this many most recent checkpoints (default 2). */
  keep?: number;
}

export interface StepMetrics {
  step: number;
  /** Σ weight·term. */
  loss: number;
  /** Unweighted value of each computed loss term, by name. */
  losses: Record<string, number>;
  /** Learning rate of the model's parameters. */
  lr: number;
  /** Learning rate of each extra parameter group (only when there are any). */
  groupLr?: Record<string, number>;
  /** Norm of the model's gradients before clipping (NaN when clipping is off). */
  gradNorm: number;
  /** exp(logit_scale) after the step's clamp. */
  logitScale: number;
  samplesPerSec: number;
}

/** What `saveTrainState` stores besides the model weights and optimiser moments. */
export interface TrainStateMeta {
  /** Optimiser steps taken so far. */
  step: number;
  rng: number;
  /** Opaque caller state (e.g. data-loader position), JSON-serialisable. */
  data?: unknown;
}

const STATE_FORMAT = 'mclip-train-state-v1';
const MODEL_FILE = 'model.safetensors';
const OPT_FILE = 'optimizer.safetensors';
const META_FILE = 'state.json';

/**
 * Writes a complete training state to `dir` atomically (model weights; optimiser moments of every
 * group, keyed `<param>.exp_avg[_sq]` for the model and `<group>.<index>.exp_avg[_sq]` for extra
 * groups; the extra groups' variables keyed `<group>.<index>` and their current lrs). Everything goes
 * to a sibling temporary directory which is then renamed onto `dir` (an existing `dir` is first moved aside and removed
 * after the swap; `loadTrainState` falls back to that copy if a crash hits between the renames).
 */
export function saveTrainState(dir: string, s: { model: CLIP; optimizer: AdamW } & TrainStateMeta): void {
  const parent = dirname(dir);
  mkdirSync(parent, { recursive: true });
  const tag = `${process.pid}-${Date.now()}`;
  const tmp = join(parent, `.${basename(dir)}.tmp-${tag}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  saveModel(s.model, join(tmp, MODEL_FILE));
  const opt: StateDict = new Map();
  for (const [k, t] of [...s.optimizer.state(), ...s.optimizer.groupVariables()]) {
    opt.set(k, { dtype: 'float32', shape: t.shape.slice(), data: Float32Array.from(t.dataSync() as Float32Array) });
  }
  writeSafetensors(join(tmp, OPT_FILE), opt, { 'mclip.format': STATE_FORMAT });
  const groupLr: Record<string, number> = {};
  for (const g of s.optimizer.groups) if (g.name !== MODEL_GROUP) groupLr[g.name] = g.lr;
  const meta = {
    format: STATE_FORMAT,
    step: s.step,
    optimizerStep: s.optimizer.step,
    lr: s.optimizer.lr,
    groupLr,
    rng: s.rng,
    data: s.data ?? null,
  };
  writeFileSync(join(tmp, META_FILE), JSON.stringify(meta, null, 1));
  const old = `${dir}.old-${tag}`;
  const hadOld = existsSync(dir);
  if (hadOld) renameSync(dir, old);
  renameSync(tmp, dir);
  if (hadOld) rmSync(old, { recursive: true, force: true });
}

/** Resolves a checkpoint root (with a `latest` pointer) or a state directory to the state directory. */
export function resolveTrainState(path: string): string {
  const latest = join(path, 'latest');
  if (existsSync(latest)) return join(path, readFileSync(latest, 'utf8').trim());
  if (existsSync(join(path, META_FILE))) return path;
  const parent = dirname(path);
  const aside = existsSync(parent) ? readdirSync(parent).filter((n) => n.startsWith(`${basename(path)}.old-`)) : [];
  if (aside.length > 0) return join(parent, aside.sort().at(-1)!);
  throw new MclipError(`${path}: no training state (${META_FILE} or 'latest') found`);
}

/**
 * Restores model weights (incl. BatchNorm statistics and logit scale), optimiser moments/step and the
 * extra parameter groups' variables and learning rates saved by `saveTrainState` into existing
 * objects; returns step, rng state and the opaque data state.
 */
export async function loadTrainState(path: string, s: { model: CLIP; optimizer: AdamW }): Promise<TrainStateMeta> {
  const dir = resolveTrainState(path);
  const meta = JSON.parse(readFileSync(join(dir, META_FILE), 'utf8')) as {
    format: string;
    step: number;
    optimizerStep: number;
    lr: number;
    groupLr?: Record<string, number>;
    rng: number;
    data: unknown;
  };
  if (meta.format !== STATE_FORMAT) throw new MclipError(`${dir}: unknown training-state format '${meta.format}'`);
  const { sd } = await readCheckpointFile(join(dir, MODEL_FILE));
  loadStateDict(s.model, sd, join(dir, MODEL_FILE));
  const { tensors } = readSafetensors(join(dir, OPT_FILE));
  const values = new Map<string, Float32Array>();
  for (const [k, t] of tensors) values.set(k, toFloat32(t));
  const groupVars = s.optimizer.groupVariables();
  const expected = [...s.optimizer.state().keys(), ...groupVars.keys()];
  const missing = expected.filter((k) => !values.has(k));
  if (missing.length > 0) throw new MclipError(`${dir}: optimiser state lacks ${missing.length} entries (e.g. ${missing[0]})`);
  for (const [k, v] of groupVars) {
    const a = values.get(k)!;
    if (a.length !== v.size) throw new MclipError(`${dir}: parameter-group variable ${k} has ${a.length} values, expected ${v.size}`);
    tf.tidy(() => v.assign(tf.tensor(a, v.shape)));
  }
  s.optimizer.loadState(meta.optimizerStep, values);
  s.optimizer.lr = meta.lr;
  for (const g of s.optimizer.groups) {
    const lr = meta.groupLr?.[g.name];
    if (g.name !== MODEL_GROUP && lr !== undefined) g.lr = lr;
  }
  return { step: meta.step, rng: meta.rng, data: meta.data ?? undefined };
}

/**
 * Keeps only the lines of a metrics JSONL file whose `step` is ≤ `step` (atomically), so a run resumed
 * from an earlier checkpoint than where it was killed logs each step once. A missing file is fine; an
 * unreadable line (a kill mid-write) is dropped.
 */
export function truncateMetrics(path: string, step: number): void {
  if (!existsSync(path)) return;
  const kept = readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => {
      if (line.trim() === '') return false;
      try {
        const v = JSON.parse(line) as { step?: unknown };
        return typeof v.step === 'number' && v.step <= step;
      } catch {
        return false;
      }
    });
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, kept.map((l) => l + '\n').join(''));
  renameSync(tmp, path);
}

/**
 * Data-agnostic MobileCLIP trainer (methods §2.1–2.5): AdamW (β₂ 0.95, wd 0.2, open_clip
 * no-decay groups), warm-up + cosine lr, global grad-norm clipping, logit scale clamped to
 * [0, ln 100] after each step, a list of named loss terms (default: the reinforced loss with
 * weight λ) and optional extra parameter groups. The step itself is `trainStep` (step.ts); the
 * Trainer adds the schedule, validation, metrics and checkpoints. The model is put in train mode.
 */
export class Trainer {
  readonly model: CLIP;
  readonly optimizer: AdamW;
  readonly rng: Rng;
  readonly opts: TrainerOptions;
  /** The loss terms of every step (their weights are read at each step). */
  readonly losses: readonly LossTerm[];
  /** Optimiser steps taken. */
  stepCount = 0;
  /** Opaque caller state stored with checkpoints (e.g. data position after the batch about to be stepped); set it before `step()`. */
  dataState: unknown = undefined;
  private readonly lambda: number;

  constructor(model: CLIP, opts: TrainerOptions) {
    this.model = model;
    this.opts = opts;
    this.lambda = opts.lambda ?? (opts.teachers ? 1 : 0);
    if (!opts.losses && this.lambda > 0 && !opts.teachers) throw new MclipError('Trainer: lambda > 0 needs teachers');
    this.losses = opts.losses ? opts.losses.slice() : reinforcedTerms(this.lambda);
    this.optimizer = new AdamW(model, {
      lr: opts.lr,
      beta1: opts.beta1 ?? 0.9,
      beta2: opts.beta2 ?? 0.95,
      eps: opts.eps ?? 1e-8,
      weightDecay: opts.weightDecay ?? 0.2,
      exclude: (name, p) => openClipExclude(name, p),
      groups: opts.paramGroups,
    });
    this.rng = new Rng(opts.seed ?? 0);
    if (opts.parallel && (opts.losses || (opts.paramGroups?.length ?? 0) > 0)) {
      throw new MclipError('Trainer: data-parallel workers support the default loss terms and the model’s own parameters only (use one worker with custom losses or parameter groups)');
    }
    this.setTrainMode();
  }

  /** Train mode, with BatchNorm frozen when asked. */
  private setTrainMode(): void {
    this.model.train();
    if (this.opts.freezeBatchNorm) freezeBatchNorm(this.model);
  }

  /** Learning rate of the model's parameters for 0-based step index `step`. */
  lrAt(step: number): number {
    return cosineLr(step, { baseLr: this.opts.lr, warmup: this.opts.warmup ?? 0, steps: this.opts.totalSteps });
  }

  /** One optimiser step; returns its metrics (also appended to metricsPath). Leaves no tensors behind. */
  step(batch: TrainBatch): StepMetrics {
    const t0 = performance.now();
    const b = batch.images.shape[0];
    if (!this.opts.losses && this.lambda > 0 && (!batch.teacherImg || !batch.teacherGt || (batch.synTokens && !batch.teacherSyn))) {
      throw new MclipError(`Trainer: lambda ${this.lambda} > 0 needs teacherImg, teacherGt${batch.synTokens ? ' and teacherSyn' : ''} in every batch`);
    }
    const lr = this.lrAt(this.stepCount);
    this.optimizer.lr = lr;
    const factor = cosineLr(this.stepCount, { baseLr: 1, warmup: this.opts.warmup ?? 0, steps: this.opts.totalSteps });
    let groupLr: Record<string, number> | undefined;
    for (const g of this.optimizer.groups) {
      if (g.name === MODEL_GROUP) continue;
      if (g.schedule) g.lr = g.baseLr * factor;
      (groupLr ??= {})[g.name] = g.lr;
    }
    const r = trainStep(this.model, this.optimizer, batch, {
      losses: this.losses,
      teachers: this.opts.teachers,
      gradClip: this.opts.gradClip ?? 1.0,
      step: this.stepCount,
      source: this.opts.parallel,
    });
    const logitScale = Math.exp(this.model.logitScale.dataSync()[0]);
    this.stepCount += 1;
    const dt = (performance.now() - t0) / 1000;
    const m: StepMetrics = { step: this.stepCount, loss: r.loss, losses: r.losses, lr, ...(groupLr ? { groupLr } : {}), gradNorm: r.gradNorm, logitScale, samplesPerSec: b / dt };
    if (this.opts.metricsPath) {
      mkdirSync(dirname(this.opts.metricsPath), { recursive: true });
      appendFileSync(this.opts.metricsPath, JSON.stringify({ ...m, time: new Date().toISOString() }) + '\n');
    }
    const every = this.opts.saveEvery ?? 0;
    if (every > 0 && this.opts.checkpointDir && this.stepCount % every === 0) this.checkpoint();
    return m;
  }

  /** Saves the full state to `<checkpointDir>/step-<n>`, updates `latest` atomically, prunes old ones. Returns the directory. */
  checkpoint(root = this.opts.checkpointDir): string {
    if (!root) throw new MclipError('Trainer.checkpoint: no checkpointDir');
    const name = `step-${String(this.stepCount).padStart(8, '0')}`;
    const dir = join(root, name);
    this.save(dir);
    const tmp = join(root, `.latest.tmp-${process.pid}`);
    writeFileSync(tmp, name + '\n');
    renameSync(tmp, join(root, 'latest'));
    const keep = Math.max(1, this.opts.keep ?? 2);
    const all = readdirSync(root)
      .filter((n) => /^step-\d+$/.test(n))
      .sort();
    for (const n of all.slice(0, Math.max(0, all.length - keep))) if (n !== name) rmSync(join(root, n), { recursive: true, force: true });
    return dir;
  }

  /** Saves the full training state to `dir` (atomic). */
  save(dir: string): void {
    saveTrainState(dir, { model: this.model, optimizer: this.optimizer, step: this.stepCount, rng: this.rng.state, data: this.dataState });
  }

  /** Restores a state saved by `save`/`checkpoint` (a state dir or a checkpoint root with `latest`). */
  async resume(path: string): Promise<TrainStateMeta> {
    const meta = await loadTrainState(path, { model: this.model, optimizer: this.optimizer });
    this.stepCount = meta.step;
    this.rng.state = meta.rng >>> 0;
    this.dataState = meta.data;
    this.setTrainMode();
    if (this.opts.metricsPath) truncateMetrics(this.opts.metricsPath, meta.step);
    return meta;
  }

  dispose(): void {
    this.optimizer.dispose();
  }
}
