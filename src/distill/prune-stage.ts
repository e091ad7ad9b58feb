/**
 * One TinyCLIP stage (methods.md §3.5–§3.7) on one tower or both: mask learning with the sparsity Lagrangian
 * for `maskSteps` steps (the target ramps from `start` to `target` over `sparsityWarmup` steps), then the
 * deterministic masks are folded and the pruned units removed (a dense smaller model), and training goes
 * on as plain distillation of that model with a fresh optimiser for the remaining steps.
 *
 * With both towers the sparsity is TinyCLIP's joint one: ŝ = 1 − (E[N_text] + E[N_image]) / (N₀_text +
 * N₀_image), so the Lagrangian decides how the pruning splits between them. A tower left out trains along
 * unmasked. In an MCi image tower the heads and ConvFFN hidden channels are masked, the stage channels only with
 * `imageChannels`; in a ViT the hidden width, the heads and the FFN units (`ViTGates`).
 *
 * Landing on the target (our addition, `calibrate`, default on): when mask learning stops, ŝ sits near the
 * target but not on it, and the deterministic masks round per gate group; so the number of units the
 * deterministic masks zero is counted with a common offset δ added to every ln α (the soft values kept are
 * unchanged, see `deterministicMask`), δ chosen by bisection so that the pruned size is the closest to the
 * target. δ = 0 is TinyCLIP's mask; the result reports δ and the size without it.
 *
 * Target 0: no masks — the stage is plain distillation of the model for `steps` steps (the student of a
 * manual-inheritance or from-scratch baseline), trained in place (`model` is returned).
 *
 * The loss is TinyCLIP's by default, L = L_distill + L_lag (`tinyclipTerms` with `form: 'tinyclip'`), with
 * the teacher embeddings in every batch (stored, or computed by the caller from a live teacher — in tfjs, or in
 * an async engine such as onnxruntime: `batch` may return a promise, awaited before each step).
 */
import * as tf from '../base/tf.js';
import { MclipError } from '../errors.js';
import type { CLIP } from '../base/model/clip.js';
import type { TeacherSpec } from '../base/train/distill-loss.js';
import type { TrainBatch } from '../base/train/loss-terms.js';
import { Trainer, type StepMetrics } from '../base/train/trainer.js';
import { tinyclipTerms, type DistillKind } from './compose.js';
import { SparsityLagrangian, maskParamGroups, sparsityTerm, stopMaskLearning, type LagrangianForm } from './masks/lagrangian.js';
import { TextGates, textPrunableSize } from './masks/text-gates.js';
import { ImageGates, imagePrunableSize } from './masks/image-gates.js';
import { ViTGates, vitPrunableSize } from './masks/vit-gates.js';
import type { Tower, TowerGates } from './masks/tower-gates.js';

/** One optimiser step of a prune stage: the Trainer's metrics, the phase, and during mask learning the expected and target sparsity (of the reference size). */
export type PruneStepMetrics = StepMetrics & { phase: 'masks' | 'dense'; sparsity?: number; target?: number };

export interface PruneStageOptions {
  /** The towers to mask (default both); their prunable parameters count jointly. */
  towers?: readonly Tower[];
  /** Target sparsity of the towers' prunable parameters, in [0, 1), relative to `reference`; 0: plain distillation, no masks. */
  target: number;
  /** Sparsity the target ramps from (default: where the model already is, relative to `reference`). */
  start?: number;
  /**
   * N₀ the sparsities are fractions of (default: this model's prunable size). Progressive stages pass the
   * original model's, so that 25 % → 50 % means half of the original's parameters.
   */
  reference?: number;
  /** Total steps of the stage (mask learning + the pruned model's distillation). */
  steps: number;
  /** Mask-learning steps (`--prune-step`); the model is pruned after them (ignored for target 0). */
  maskSteps: number;
  /**
   * Mask the MCi stage channels too (default false: heads and ConvFFN hidden channels only). The coupled stage
   * channels (image-gates.ts) are coarse knobs — one stage-0 channel carries 2^s channels of stage s — and on
   * short stages they made the joint Lagrangian run away (measured on the micro model, target 0.25, 24 mask
   * steps: ŝ 0.98 with them, 0.28 without).
   */
  imageChannels?: boolean;
  /** Land the pruned size on the target by the count offset δ (default true; see the file comment). */
  calibrate?: boolean;
  /** Steps of the target ramp (default: half of maskSteps). */
  sparsityWarmup?: number;
  /** Peak lr of the model (default 1e-4, TinyCLIP's). */
  lr?: number;
  /**
   * lr of the mask logits and of the multipliers. Default max(0.02, 24 / maskSteps): TinyCLIP's 0.02 over its
   * thousands of mask steps; a short stage needs a larger one for ln α to travel from its clamp (ln 100)
   * to where the gates close within the stage.
   */
  maskLr?: number;
  lambdaLr?: number;
  /**
   * Default 'two-sided' with λ₁ = 0, λ₂ = 100: on short stages TinyCLIP's one-sided form with λ = 10
   * overshoots (measured: target 0.25, reached 0.55 after 40 mask steps), because nothing pulls ŝ back but the
   * task loss; the quadratic term does.
   */
  form?: LagrangianForm;
  /** Cosine-decay the mask and multiplier lr over the mask steps (default true; TinyCLIP keeps them constant over its thousands of steps). */
  decayMaskLr?: boolean;
  /** Initial ln α of the gates (default 10, TinyCLIP's). */
  initLogAlpha?: number;
  /** Initial λ₁, λ₂ (default [0, 100] for the two-sided form, 10 each — TinyCLIP's — for the one-sided). */
  lambdaInit?: number | [number, number];
  distill?: DistillKind;
  /**
   * Distillation share λ ∈ [0, 1] of the task side in both phases: L = (1 − λ)·L_CLIP + λ·L_distill (+ L_lag while
   * masks are learnt). Default 1: TinyCLIP's L_distill + L_lag, no contrastive term.
   */
  lambda?: number;
  /** 'affinity' only: the teacher's inverse temperature (default 50, TinyCLIP's). */
  teacherScale?: number;
  teachers: readonly TeacherSpec[];
  /**
   * The batch of 0-based step `step` (with the teachers' stored embeddings), or a promise of it (a live teacher in
   * an async engine, e.g. onnxruntime); the stage awaits it before the step and disposes its tensors after it.
   */
  batch: (step: number) => TrainBatch | Promise<TrainBatch>;
  seed?: number;
  onStep?: (m: PruneStepMetrics) => void;
}

export interface PruneStageResult {
  /** The pruned dense model (the input model is left as it was trained, masks removed); for target 0 the input model, trained. */
  model: CLIP;
  /** Expected sparsity ŝ when mask learning stopped (relative to `reference`). */
  expected: number;
  /** 1 − N(pruned)/N₀ of the prunable parameters of the masked towers (N₀: `reference`). */
  reached: number;
  /** The sparsity TinyCLIP's deterministic masks (δ = 0) would have given. */
  uncalibrated: number;
  /** The count offset δ used (0 without calibration). */
  countShift: number;
  prunable: { before: number; after: number };
  /** Prunable sizes per masked tower. */
  towers: Partial<Record<Tower, { before: number; after: number }>>;
}

/** The prunable parameter count of one tower (N₀ with every mask open). */
export function prunableSize(model: CLIP, tower: Tower): number {
  if (tower === 'text') return textPrunableSize(model);
  return model.cfg.image.kind === 'vit' ? vitPrunableSize(model) : imagePrunableSize(model);
}

/** Σ of the towers' prunable sizes. */
export function jointPrunableSize(model: CLIP, towers: readonly Tower[]): number {
  return towers.reduce((s, t) => s + prunableSize(model, t), 0);
}

function towerGates(model: CLIP, tower: Tower, seed: number, initLogAlpha: number | undefined, imageChannels: boolean): TowerGates {
  if (tower === 'text') return new TextGates(model, { seed, initLogAlpha });
  if (model.cfg.image.kind === 'vit') return new ViTGates(model, { seed: seed + 7777, initLogAlpha });
  return new ImageGates(model, { seed: seed + 7777, initLogAlpha, channels: imageChannels });
}

/**
 * The count offset δ whose pruned size Σ prunedSize(δ) is closest to `targetSize` (bisection: the size is
 * non-decreasing in δ), and that size.
 */
export function calibrateShift(size: (shift: number) => number, targetSize: number): { shift: number; size: number } {
  let lo = -30;
  let hi = 30;
  let best = { shift: 0, size: size(0) };
  const consider = (shift: number, n: number) => {
    if (Math.abs(n - targetSize) < Math.abs(best.size - targetSize)) best = { shift, size: n };
  };
  consider(lo, size(lo));
  consider(hi, size(hi));
  for (let i = 0; i < 40; i++) {
    const mid = (lo + hi) / 2;
    const n = size(mid);
    consider(mid, n);
    if (n < targetSize) lo = mid;
    else hi = mid;
  }
  return best;
}

export function checkStageOptions(o: PruneStageOptions): void {
  if (!(o.target >= 0 && o.target < 1)) throw new MclipError(`prune stage: target sparsity must be in [0, 1), got ${o.target}`);
  if (o.lambda != null && !(o.lambda >= 0 && o.lambda <= 1)) throw new MclipError(`prune stage: lambda must be in [0, 1], got ${o.lambda}`);
  if (o.start != null && !(o.start >= 0 && o.start <= o.target)) throw new MclipError(`prune stage: start sparsity must be in [0, target], got ${o.start}`);
  if (o.towers && (o.towers.length === 0 || o.towers.some((t) => t !== 'text' && t !== 'image') || new Set(o.towers).size !== o.towers.length)) throw new MclipError(`prune stage: towers must be distinct 'text' / 'image', got [${o.towers.join(', ')}]`);
  if (o.target === 0) {
    if (!(Number.isInteger(o.steps) && o.steps > 0)) throw new MclipError(`prune stage: steps must be a positive integer, got ${o.steps}`);
    return;
  }
  if (!(Number.isInteger(o.maskSteps) && o.maskSteps > 0)) throw new MclipError(`prune stage: maskSteps must be a positive integer, got ${o.maskSteps}`);
  if (!(Number.isInteger(o.steps) && o.steps >= o.maskSteps)) throw new MclipError(`prune stage: steps (${o.steps}) must be an integer ≥ maskSteps (${o.maskSteps})`);
}

/** The default lr of the mask logits and multipliers for a stage of `maskSteps` mask-learning steps. */
export function defaultMaskLr(maskSteps: number): number {
  return Math.max(0.02, 24 / maskSteps);
}

function stepOn(trainer: Trainer, b: TrainBatch): StepMetrics {
  try {
    return trainer.step(b);
  } finally {
    tf.dispose([b.images, b.gtTokens, ...(b.synTokens ? [b.synTokens] : [])]);
  }
}

async function distilDense(model: CLIP, o: PruneStageOptions, steps: number, offset: number): Promise<void> {
  if (steps <= 0) return;
  const dense = new Trainer(model, { lr: o.lr ?? 1e-4, totalSteps: steps, warmup: 0, losses: tinyclipTerms({ form: 'tinyclip', distill: o.distill ?? 'affinity', lambda: o.lambda, teacherScale: o.teacherScale, source: 'stored' }), teachers: o.teachers, seed: o.seed });
  try {
    for (let s = 0; s < steps; s++) {
      const m = stepOn(dense, await o.batch(offset + s));
      o.onStep?.({ ...m, step: offset + m.step, phase: 'dense' });
    }
  } finally {
    dense.dispose();
  }
}

export async function runPruneStage(model: CLIP, o: PruneStageOptions): Promise<PruneStageResult> {
  checkStageOptions(o);
  const towers = o.towers ?? (['text', 'image'] as const);
  const before = jointPrunableSize(model, towers);
  const ref = o.reference ?? before;
  if (!(ref >= before)) throw new MclipError(`prune stage: reference size ${ref} is below the model's prunable size ${before}`);
  const perTower = (m: CLIP) => Object.fromEntries(towers.map((t) => [t, prunableSize(m, t)])) as Partial<Record<Tower, number>>;
  if (o.target === 0) {
    await distilDense(model, o, o.steps, 0);
    const sizes = perTower(model);
    const towersOut = Object.fromEntries(towers.map((t) => [t, { before: sizes[t]!, after: sizes[t]! }]));
    const r = 1 - before / ref;
    return { model, expected: r, reached: r, uncalibrated: r, countShift: 0, prunable: { before, after: before }, towers: towersOut };
  }
  // sparsities relative to `ref` → relative to this model: 1 − (1 − t)·ref/before
  const local = (t: number) => 1 - ((1 - t) * ref) / before;
  const already = 1 - before / ref;
  if (o.target < already - 1e-9) throw new MclipError(`prune stage: target ${o.target} is below the sparsity the model already has (${already.toFixed(4)})`);
  const beforeTowers = perTower(model);
  const gates: TowerGates[] = [];
  const lag = new SparsityLagrangian({ start: local(Math.max(o.start ?? already, already)), end: local(o.target), warmup: o.sparsityWarmup ?? Math.max(1, Math.floor(o.maskSteps / 2)), form: o.form ?? 'two-sided' });
  const lambdaInit = o.lambdaInit ?? ((o.form ?? 'two-sided') === 'two-sided' ? [0, 100] : 10);
  {
    const [l1, l2] = typeof lambdaInit === 'number' ? [lambdaInit, lambdaInit] : lambdaInit;
    tf.tidy(() => {
      lag.lambda1.assign(tf.scalar(l1));
      lag.lambda2.assign(tf.scalar(l2));
    });
  }
  /** Joint ŝ of the gated towers (relative to this model), differentiable. */
  const sparsity = (): tf.Scalar =>
    tf.tidy(() => {
      const sizes = gates.map((g) => g.expectedSize());
      return tf.scalar(1).sub(tf.addN(sizes.map((s) => s.expected)).div(before)) as tf.Scalar;
    });
  const toRef = (sp: number) => 1 - ((1 - sp) * before) / ref;
  let expected = 0;
  const pruned: CLIP[] = [];
  try {
    for (const t of towers) gates.push(towerGates(model, t, o.seed ?? 0, o.initLogAlpha, o.imageChannels ?? false));
    for (const g of gates) g.install();
    // cosine-decayed with the stage (`schedule`), so the gates settle on the target instead of oscillating around it
    const maskLr = o.maskLr ?? defaultMaskLr(o.maskSteps);
    const groups = maskParamGroups(gates.flatMap((g) => g.logAlphas), lag, { maskLr, lambdaLr: o.lambdaLr ?? maskLr }).map((g) => ({ ...g, schedule: o.decayMaskLr ?? true }));
    const terms = tinyclipTerms({ form: 'tinyclip', distill: o.distill ?? 'affinity', lambda: o.lambda, teacherScale: o.teacherScale, source: 'stored', sparsity: sparsityTerm(lag, sparsity) });
    const trainer = new Trainer(model, { lr: o.lr ?? 1e-4, totalSteps: o.maskSteps, warmup: 0, losses: terms, paramGroups: groups, teachers: o.teachers, seed: o.seed });
    try {
      for (let s = 0; s < o.maskSteps; s++) {
        const m = stepOn(trainer, await o.batch(s));
        for (const g of gates) g.clamp();
        const sp = tf.tidy(() => sparsity().dataSync()[0]);
        o.onStep?.({ ...m, phase: 'masks', sparsity: toRef(sp), target: toRef(lag.targetAt(s)) });
      }
      stopMaskLearning(trainer.optimizer);
    } finally {
      trainer.dispose();
    }
    expected = toRef(tf.tidy(() => sparsity().dataSync()[0]));
    const sizeAt = (shift: number) => gates.reduce((n, g) => n + g.prunedSize(shift), 0);
    const uncalibrated = 1 - sizeAt(0) / ref;
    const shift = o.calibrate ?? true ? calibrateShift(sizeAt, (1 - o.target) * ref).shift : 0;
    for (const g of gates) g.remove();
    let current = model;
    for (const g of gates) {
      current = g.prune(current, shift);
      pruned.push(current);
    }
    const out = pruned.pop()!;
    for (const m of pruned.splice(0)) m.dispose();
    pruned.push(out);
    await distilDense(out, o, o.steps - o.maskSteps, o.maskSteps);
    const afterTowers = perTower(out);
    const after = towers.reduce((n, t) => n + afterTowers[t]!, 0);
    const towersOut = Object.fromEntries(towers.map((t) => [t, { before: beforeTowers[t]!, after: afterTowers[t]! }]));
    return { model: out, expected, reached: 1 - after / ref, uncalibrated, countShift: shift, prunable: { before, after }, towers: towersOut };
  } catch (e) {
    for (const m of pruned) m.dispose();
    throw e;
  } finally {
    for (const g of gates) g.dispose();
    lag.dispose();
  }
}
