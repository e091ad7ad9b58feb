/**
 * One TinyCLIP stage on a text tower (methods.md §3.5–§3.7): mask learning with the sparsity Lagrangian
 * for `maskSteps` steps (the target ramps from `start` to `target` over `sparsityWarmup` steps), then the
 * deterministic masks are folded and the pruned units removed (a dense smaller model), and training goes
 * on as plain distillation of that model with a fresh optimiser for the remaining steps.
 *
 * The loss is TinyCLIP's by default, L = L_distill + L_lag (`tinyclipTerms` with `form: 'tinyclip'`),
 * with the teacher's stored embeddings in every batch (reinforced data); the image tower trains along
 * but is not masked here.
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
import { pruneText } from './masks/prune-text.js';

export interface TextPruneStageOptions {
  /** Target sparsity of the text tower's prunable parameters, in [0, 1), relative to `reference`. */
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
  /** Mask-learning steps (`--prune-step`); the model is pruned after them. */
  maskSteps: number;
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
  teachers: readonly TeacherSpec[];
  /** The batch of 0-based step `step` (with the teachers' stored embeddings); the stage disposes its tensors after the step. */
  batch: (step: number) => TrainBatch;
  seed?: number;
  onStep?: (m: StepMetrics & { phase: 'masks' | 'dense'; sparsity?: number; target?: number }) => void;
}

export interface TextPruneStageResult {
  /** The pruned dense model (the input model is left as it was trained, masks removed). */
  model: CLIP;
  /** Expected sparsity ŝ when mask learning stopped (relative to `reference`). */
  expected: number;
  /** 1 − N(pruned)/N₀ of the text tower's prunable parameters (N₀: `reference`). */
  reached: number;
  prunable: { before: number; after: number };
}

export function checkStageOptions(o: TextPruneStageOptions): void {
  if (!(o.target >= 0 && o.target < 1)) throw new MclipError(`text prune stage: target sparsity must be in [0, 1), got ${o.target}`);
  if (o.start != null && !(o.start >= 0 && o.start <= o.target)) throw new MclipError(`text prune stage: start sparsity must be in [0, target], got ${o.start}`);
  if (!(Number.isInteger(o.maskSteps) && o.maskSteps > 0)) throw new MclipError(`text prune stage: maskSteps must be a positive integer, got ${o.maskSteps}`);
  if (!(Number.isInteger(o.steps) && o.steps >= o.maskSteps)) throw new MclipError(`text prune stage: steps (${o.steps}) must be an integer ≥ maskSteps (${o.maskSteps})`);
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

export function runTextPruneStage(model: CLIP, o: TextPruneStageOptions): TextPruneStageResult {
  checkStageOptions(o);
  const before = textPrunableSize(model);
  const ref = o.reference ?? before;
  if (!(ref >= before)) throw new MclipError(`text prune stage: reference size ${ref} is below the model's prunable size ${before}`);
  // sparsities relative to `ref` → relative to this model: 1 − (1 − t)·ref/before
  const local = (t: number) => 1 - ((1 - t) * ref) / before;
  const already = 1 - before / ref;
  if (o.target < already - 1e-9) throw new MclipError(`text prune stage: target ${o.target} is below the sparsity the model already has (${already.toFixed(4)})`);
  const gates = new TextGates(model, { seed: o.seed ?? 0, initLogAlpha: o.initLogAlpha });
  const lag = new SparsityLagrangian({ start: local(Math.max(o.start ?? already, already)), end: local(o.target), warmup: o.sparsityWarmup ?? Math.max(1, Math.floor(o.maskSteps / 2)), form: o.form ?? 'two-sided' });
  const lambdaInit = o.lambdaInit ?? ((o.form ?? 'two-sided') === 'two-sided' ? [0, 100] : 10);
  {
    const [l1, l2] = typeof lambdaInit === 'number' ? [lambdaInit, lambdaInit] : lambdaInit;
    tf.tidy(() => {
      lag.lambda1.assign(tf.scalar(l1));
      lag.lambda2.assign(tf.scalar(l2));
    });
  }
  let expected = 0;
  let pruned: CLIP | null = null;
  try {
    gates.install();
    // cosine-decayed with the stage (`schedule`), so the gates settle on the target instead of oscillating around it
    const groups = maskParamGroups(gates.logAlphas, lag, { maskLr: o.maskLr ?? defaultMaskLr(o.maskSteps), lambdaLr: o.lambdaLr ?? defaultMaskLr(o.maskSteps) }).map((g) => ({ ...g, schedule: o.decayMaskLr ?? true }));
    const terms = tinyclipTerms({ form: 'tinyclip', distill: o.distill ?? 'affinity', source: 'stored', sparsity: sparsityTerm(lag, () => gates.expectedSparsity()) });
    const trainer = new Trainer(model, { lr: o.lr ?? 1e-4, totalSteps: o.maskSteps, warmup: 0, losses: terms, paramGroups: groups, teachers: o.teachers, seed: o.seed });
    try {
      for (let s = 0; s < o.maskSteps; s++) {
        const m = stepOn(trainer, o.batch(s));
        gates.clamp();
        const sp = tf.tidy(() => gates.expectedSparsity().dataSync()[0]);
        o.onStep?.({ ...m, phase: 'masks', sparsity: 1 - ((1 - sp) * before) / ref, target: 1 - ((1 - lag.targetAt(s)) * before) / ref });
      }
      stopMaskLearning(trainer.optimizer);
    } finally {
      trainer.dispose();
    }
    expected = 1 - ((1 - tf.tidy(() => gates.expectedSparsity().dataSync()[0])) * before) / ref;
    const values = gates.deterministic();
    gates.remove();
    pruned = pruneText(model, values).model;
    const rest = o.steps - o.maskSteps;
    if (rest > 0) {
      const dense = new Trainer(pruned, { lr: o.lr ?? 1e-4, totalSteps: rest, warmup: 0, losses: tinyclipTerms({ form: 'tinyclip', distill: o.distill ?? 'affinity', source: 'stored' }), teachers: o.teachers, seed: o.seed });
      try {
        for (let s = 0; s < rest; s++) o.onStep?.({ ...stepOn(dense, o.batch(o.maskSteps + s)), phase: 'dense' });
      } finally {
        dense.dispose();
      }
    }
    const after = textPrunableSize(pruned);
    return { model: pruned, expected, reached: 1 - after / ref, prunable: { before, after } };
  } catch (e) {
    pruned?.dispose();
    throw e;
  } finally {
    gates.dispose();
    lag.dispose();
  }
}
