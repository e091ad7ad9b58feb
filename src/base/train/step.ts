/**
 * The one training step of mclip (the Trainer adds the lr schedule, metrics and checkpoints around
 * it): forward, the named loss terms, one tf.variableGrads over every optimised variable, gradient
 * clipping of the model's parameters, AdamW over all parameter groups, logit-scale clamp.
 */
import * as tf from '../tf.js';
import { MclipError } from '../../errors.js';
import type { CLIP } from '../model/clip.js';
import { l2normalize } from '../model/clip.js';
import { MODEL_GROUP, clipGradNorm, type AdamW } from './adamw.js';
import type { TeacherSpec } from './distill-loss.js';
import { contrastiveTerm, type LossInputs, type LossTerm, type TeacherFeatures, type TrainBatch } from './loss-terms.js';

export type { TrainBatch } from './loss-terms.js';

export interface LossOptions {
  /** Loss terms; default `[contrastiveTerm()]` (plain CLIP loss over gt and, if given, synthetic captions). */
  losses?: readonly LossTerm[];
  /** Teachers of the batch's stored features (needed by the `distill` term). */
  teachers?: readonly TeacherSpec[];
  /** Variables to differentiate; default the model's trainable variables. */
  variables?: tf.Variable[];
  /** 0-based step index handed to the terms (LossInputs.step). Default 0. */
  step?: number;
  /**
   * Data-parallel training: `batch` is this rank's slice, and the loss sees the whole batch's features
   * (gathered across ranks, this rank's rows live). Teacher features in `batch` are then whole-batch.
   */
  gather?: FeatureGather;
}

/** The gather seam of data-parallel training (see src/base/train/parallel). */
export interface FeatureGather {
  /** Rows of the whole batch. */
  batchSize: number;
  /**
   * Whether this rank differentiates the parameters the loss uses directly (the logit scale): exactly one
   * rank does, so that the summed gradients count them once.
   */
  ownsLossParameters: boolean;
  /** Local normalised features [rows, D] (image, gt text[, syn text]) → whole-batch ones [B, D], own rows live. */
  gather(parts: tf.Tensor2D[]): tf.Tensor2D[];
}

/** Where a step's loss and gradients come from: this thread alone (`lossAndGrads`), or data-parallel workers. */
export interface GradientSource {
  lossAndGrads(model: CLIP, batch: TrainBatch, opts: LossOptions): LossAndGrads;
}

export interface LossAndGrads {
  /** Σ weight·term (caller disposes). */
  loss: tf.Scalar;
  /** Unweighted value of every computed term, in list order (caller disposes). */
  losses: Record<string, tf.Scalar>;
  /** Gradients keyed by variable name; variables the loss does not reach have none (caller disposes). */
  grads: Record<string, tf.Tensor>;
}

function activeTerms(terms: readonly LossTerm[]): Array<{ term: LossTerm; weight: number }> {
  const names = new Set<string>();
  const out: Array<{ term: LossTerm; weight: number }> = [];
  for (const term of terms) {
    if (names.has(term.name)) throw new MclipError(`train step: loss term '${term.name}' appears twice`);
    names.add(term.name);
    const weight = term.weight ?? 1;
    if (!Number.isFinite(weight)) throw new MclipError(`train step: loss term '${term.name}' has weight ${weight}`);
    if (weight !== 0) out.push({ term, weight });
  }
  if (out.length === 0) throw new MclipError('train step: no loss term with a non-zero weight');
  return out;
}

function checkBatch(batch: TrainBatch, teachers: readonly TeacherSpec[] | undefined, whole: number): void {
  const b = batch.images.shape[0];
  if (batch.gtTokens.shape[0] !== b) throw new MclipError(`train step: ${batch.gtTokens.shape[0]} captions for ${b} images`);
  if (batch.synTokens && batch.synTokens.shape[0] !== b) throw new MclipError(`train step: ${batch.synTokens.shape[0]} synthetic captions for ${b} images`);
  if (!teachers) return;
  const width = teachers.reduce((s, t) => s + t.dim, 0);
  for (const [what, a] of [['teacherImg', batch.teacherImg], ['teacherGt', batch.teacherGt], ['teacherSyn', batch.teacherSyn]] as const) {
    if (a && a.length !== whole * width) throw new MclipError(`train step: ${what} has ${a.length} values, expected ${whole}×${width}`);
  }
}

/**
 * Loss terms and gradients of one batch (the model must be in train mode for BatchNorm batch
 * statistics). One text-encoder pass over [gt; syn] (2b rows), split into the two b×b problems.
 */
export function lossAndGrads(model: CLIP, batch: TrainBatch, opts: LossOptions = {}): LossAndGrads {
  const terms = activeTerms(opts.losses ?? [contrastiveTerm()]);
  const teachers = opts.teachers;
  const gather = opts.gather;
  const b = batch.images.shape[0];
  /** Rows of the whole batch (the loss's b). */
  const whole = gather?.batchSize ?? b;
  checkBatch(batch, teachers, whole);
  const losses: Record<string, tf.Scalar> = {};
  const variables = opts.variables ?? model.trainableVariables();
  // An error inside the tape (a failing forward or term) is caught and the pass completed with a zero
  // loss connected to every variable, so tf.js releases the tensors it saved for the backward pass;
  // then everything is disposed and the error rethrown.
  let failed = false;
  let failure: unknown;
  const { value, grads } = tf.variableGrads(() => {
    try {
      let img = l2normalize(model.encodeImage(batch.images)) as tf.Tensor2D;
      const syn = batch.synTokens;
      const tokens = syn ? tf.concat([batch.gtTokens, syn], 0) : batch.gtTokens;
      const txt = l2normalize(model.encodeText(tokens)) as tf.Tensor2D;
      let gtTxt = syn ? (txt.slice([0, 0], [b, -1]) as tf.Tensor2D) : txt;
      let synTxt = syn ? (txt.slice([b, 0], [b, -1]) as tf.Tensor2D) : undefined;
      let scale = model.logitScaleExp();
      if (gather) {
        [img, gtTxt, synTxt] = gather.gather(synTxt ? [img, gtTxt, synTxt] : [img, gtTxt]);
        if (!gather.ownsLossParameters) scale = tf.scalar(scale.dataSync()[0]);
      }
      let teacher: TeacherFeatures | undefined;
      if (teachers && batch.teacherImg && batch.teacherGt) {
        const width = teachers.reduce((s, t) => s + t.dim, 0);
        teacher = {
          specs: teachers,
          img: tf.tensor2d(batch.teacherImg, [whole, width]),
          gt: tf.tensor2d(batch.teacherGt, [whole, width]),
          syn: syn && batch.teacherSyn ? tf.tensor2d(batch.teacherSyn, [whole, width]) : undefined,
        };
      }
      const x: LossInputs = { model, batch, img, gtTxt, synTxt, scale, teacher, step: opts.step ?? 0 };
      let total: tf.Scalar | undefined;
      for (const { term, weight } of terms) {
        const v = term.compute(x);
        if (v.rank !== 0) throw new MclipError(`train step: loss term '${term.name}' returned shape [${v.shape}], expected a scalar`);
        losses[term.name] = tf.keep(v);
        const w = weight === 1 ? v : (v.mul(weight) as tf.Scalar);
        total = total ? (total.add(w) as tf.Scalar) : w;
      }
      return total!;
    } catch (e) {
      failed = true;
      failure = e;
      return tf.addN(variables.map((v) => v.sum())).mul(0) as tf.Scalar;
    }
  }, variables);
  if (failed) {
    tf.dispose([value, ...Object.values(losses), ...Object.values(grads as Record<string, tf.Tensor>)]);
    throw failure;
  }
  return { loss: value, losses, grads: grads as Record<string, tf.Tensor> };
}

export interface StepOptions extends Omit<LossOptions, 'variables' | 'gather'> {
  /** Where loss and gradients come from (default: this thread, `lossAndGrads`). */
  source?: GradientSource;
  /** Global L2 gradient-norm clip of the model group's gradients (extra groups are never clipped); 0 or undefined disables. */
  gradClip?: number;
}

export interface StepResult {
  /** Σ weight·term. */
  loss: number;
  /** Unweighted value of every computed term, by name. */
  losses: Record<string, number>;
  /** Global L2 norm of the model group's gradients before clipping (NaN when clipping is off). */
  gradNorm: number;
}

/**
 * One optimisation step: `lossAndGrads` over every variable of `optimizer` (all groups), clipping of
 * the model group's gradients, AdamW at the groups' current learning rates, then the logit scale
 * clamped to [0, ln 100]. Leaves no tensors behind.
 */
export function trainStep(model: CLIP, optimizer: AdamW, batch: TrainBatch, opts: StepOptions = {}): StepResult {
  const { source, ...rest } = opts;
  const lossOpts: LossOptions = { ...rest, variables: optimizer.variables };
  const { loss, losses, grads } = source ? source.lossAndGrads(model, batch, lossOpts) : lossAndGrads(model, batch, lossOpts);
  try {
    let gradNorm = NaN;
    if (opts.gradClip && opts.gradClip > 0) {
      const own: Record<string, tf.Tensor> = {};
      for (const v of optimizer.group(MODEL_GROUP).variables) if (grads[v.name]) own[v.name] = grads[v.name];
      gradNorm = Object.keys(own).length > 0 ? clipGradNorm(own, opts.gradClip) : 0;
      Object.assign(grads, own);
    }
    optimizer.apply(grads);
    tf.tidy(() => {
      model.logitScale.assign(tf.clipByValue(model.logitScale, 0, Math.log(100)));
    });
    const values: Record<string, number> = {};
    for (const [k, t] of Object.entries(losses)) values[k] = t.dataSync()[0];
    return { loss: loss.dataSync()[0], losses: values, gradNorm };
  } finally {
    tf.dispose([loss, ...Object.values(losses), ...Object.values(grads)]);
  }
}
