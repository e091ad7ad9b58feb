/**
 * TinyCLIP's sparsity Lagrangian (methods.md §3.5): a linearly ramped target sparsity t(step), the penalty
 * L_lag(ŝ, t; λ₁, λ₂) in the paper's two-sided (CoFi) form or the code's one-sided form, the multipliers
 * λ₁, λ₂ as variables learned by gradient *ascent*, and the optimiser groups of the min–max game: the mask
 * logits minimise L (lr 0.02), the multipliers maximise it (lr 0.02 with `ascent`, TinyCLIP's lr −0.02);
 * no weight decay on either. Mask learning stops at `--prune-step` (both groups' lr set to 0).
 */
import * as tf from '../../base/tf.js';
import { MclipError } from '../../errors.js';
import type { AdamW, ParamGroup } from '../../base/train/adamw.js';
import type { LossInputs, LossTerm } from '../../base/train/loss-terms.js';

/**
 * - `two-sided` (paper / CoFi): L = λ₁(ŝ − t) + λ₂(ŝ − t)² — pulls ŝ to t from both sides.
 * - `one-sided` (TinyCLIP's code): L = λ₁·max(t − ŝ, 0) + λ₂·max(t − ŝ, 0)² — only "not sparse enough" is penalised.
 */
export type LagrangianForm = 'two-sided' | 'one-sided';

/** Default `--sparsity-warmup`: steps of the linear target ramp. */
export const DEFAULT_SPARSITY_WARMUP = 1000;
/** Initial λ₁ and λ₂. */
export const DEFAULT_LAMBDA_INIT = 10;
/** lr of the mask logits and (as ascent) of the multipliers. */
export const DEFAULT_MASK_LR = 0.02;
export const DEFAULT_LAMBDA_LR = 0.02;
/** Optimiser group names. */
export const MASK_GROUP = 'masks';
export const LAMBDA_GROUP = 'lagrangian';

export interface SparsityTarget {
  /** Target sparsity at step 0 (t_start). */
  start: number;
  /** Target sparsity after the ramp (t_end). */
  end: number;
  /** Steps of the ramp (`--sparsity-warmup`, default 1000; 0: t_end from the start). */
  warmup?: number;
}

function checkTarget(t: SparsityTarget): void {
  for (const [k, v] of [['start', t.start], ['end', t.end]] as const) {
    if (!(v >= 0 && v < 1)) throw new MclipError(`sparsity target: ${k} must be in [0, 1), got ${v}`);
  }
  const w = t.warmup ?? DEFAULT_SPARSITY_WARMUP;
  if (!(Number.isFinite(w) && w >= 0)) throw new MclipError(`sparsity target: warmup must be a non-negative number of steps, got ${w}`);
}

/** t(step) = t_start + (t_end − t_start)·min(1, step/warmup). */
export function targetSparsity(step: number, t: SparsityTarget): number {
  const w = t.warmup ?? DEFAULT_SPARSITY_WARMUP;
  const f = w > 0 ? Math.min(1, Math.max(0, step) / w) : 1;
  return t.start + (t.end - t.start) * f;
}

/** L_lag of expected sparsity `s` against target `t` in the given form (differentiable in s, λ₁, λ₂). */
export function lagrangianLoss(s: tf.Scalar, t: number, lambda1: tf.Tensor, lambda2: tf.Tensor, form: LagrangianForm): tf.Scalar {
  return tf.tidy(() => {
    const gap = form === 'two-sided' ? s.sub(t) : tf.relu(tf.sub(t, s));
    return lambda1.mul(gap).add(lambda2.mul(gap.square())).reshape([]) as tf.Scalar;
  });
}

export interface SparsityLagrangianOptions extends SparsityTarget {
  /** Default 'one-sided' (what TinyCLIP's code trains with). */
  form?: LagrangianForm;
  /** Initial λ₁ and λ₂ (default 10 each). */
  lambdaInit?: number;
  /** Name prefix of the two variables (tf variable names are global). */
  name?: string;
}

/** The target ramp, the form and the multipliers λ₁, λ₂ (owned: `dispose()` frees them). */
export class SparsityLagrangian {
  readonly lambda1: tf.Variable;
  readonly lambda2: tf.Variable;
  readonly form: LagrangianForm;
  readonly target: Readonly<Required<SparsityTarget>>;

  constructor(opts: SparsityLagrangianOptions) {
    checkTarget(opts);
    this.form = opts.form ?? 'one-sided';
    this.target = { start: opts.start, end: opts.end, warmup: opts.warmup ?? DEFAULT_SPARSITY_WARMUP };
    const init = opts.lambdaInit ?? DEFAULT_LAMBDA_INIT;
    if (!Number.isFinite(init)) throw new MclipError(`SparsityLagrangian: lambdaInit must be finite, got ${init}`);
    const name = opts.name;
    this.lambda1 = tf.tidy(() => tf.variable(tf.scalar(init), true, name && `${name}_lambda1`));
    this.lambda2 = tf.tidy(() => tf.variable(tf.scalar(init), true, name && `${name}_lambda2`));
  }

  /** t(step). */
  targetAt(step: number): number {
    return targetSparsity(step, this.target);
  }

  /** L_lag(ŝ, t(step)). */
  loss(s: tf.Scalar, step: number): tf.Scalar {
    return lagrangianLoss(s, this.targetAt(step), this.lambda1, this.lambda2, this.form);
  }

  get variables(): tf.Variable[] {
    return [this.lambda1, this.lambda2];
  }

  dispose(): void {
    tf.dispose([this.lambda1, this.lambda2]);
  }
}

export interface MaskGroupOptions {
  /** lr of the mask logits (default 0.02). */
  maskLr?: number;
  /** lr of the multipliers' ascent (default 0.02). */
  lambdaLr?: number;
}

/**
 * The two optimiser groups of mask learning, for `AdamWOptions.groups`: `masks` (the ln α variables, descent,
 * no weight decay, constant lr) and `lagrangian` (λ₁, λ₂: ascent, no weight decay, constant lr).
 */
export function maskParamGroups(logAlphas: readonly tf.Variable[], lagrangian: SparsityLagrangian, opts: MaskGroupOptions = {}): ParamGroup[] {
  return [
    { name: MASK_GROUP, variables: logAlphas.slice(), lr: opts.maskLr ?? DEFAULT_MASK_LR, weightDecay: 0 },
    { name: LAMBDA_GROUP, variables: lagrangian.variables, lr: opts.lambdaLr ?? DEFAULT_LAMBDA_LR, weightDecay: 0, ascent: true },
  ];
}

/** Stops mask learning (`--prune-step` reached): the mask and multiplier groups' lr become 0. */
export function stopMaskLearning(optimizer: AdamW, groups: readonly string[] = [MASK_GROUP, LAMBDA_GROUP]): void {
  for (const g of groups) optimizer.group(g).lr = 0;
}

/** Calls `stopMaskLearning` once `step` (0-based, the step about to be applied) reaches `pruneStep`; returns whether mask learning is stopped. */
export function stopMaskLearningAt(optimizer: AdamW, step: number, pruneStep: number, groups: readonly string[] = [MASK_GROUP, LAMBDA_GROUP]): boolean {
  if (step < pruneStep) return false;
  stopMaskLearning(optimizer, groups);
  return true;
}

/**
 * The loss term `sparsity`: L_lag(ŝ, t(x.step)), where `sparsity(x)` returns the expected sparsity ŝ of the
 * current masks (e.g. `expectedSparsity` of the towers' `SizeTerm`s built from the gates' keep probabilities,
 * inside the step's gradient tape).
 */
export function sparsityTerm(lagrangian: SparsityLagrangian, sparsity: (x: LossInputs) => tf.Scalar, weight = 1): LossTerm {
  return {
    name: 'sparsity',
    weight,
    compute: (x) => tf.tidy(() => lagrangian.loss(sparsity(x), x.step)),
  };
}
