import * as tf from '../tf.js';
import { MclipError } from '../../errors.js';
import type { CLIP } from '../model/clip.js';
import { clipLoss } from './clip-loss.js';
import { distillLoss, type TeacherSpec } from './distill-loss.js';

/** One training batch. Teacher features are row-major [b, ΣD_k] (teachers concatenated). */
export interface TrainBatch {
  /** NHWC images in [0, 1]. */
  images: tf.Tensor4D;
  /** Ground-truth caption tokens [b, S] int32. */
  gtTokens: tf.Tensor2D;
  /** Synthetic caption tokens [b, S] int32 (optional: without them only L(gt) is used). */
  synTokens?: tf.Tensor2D;
  teacherImg?: Float32Array;
  teacherGt?: Float32Array;
  teacherSyn?: Float32Array;
}

/** The batch's stored teacher features as tensors [b, ΣD_k], with the teachers that produced them. */
export interface TeacherFeatures {
  specs: readonly TeacherSpec[];
  img: tf.Tensor2D;
  gt: tf.Tensor2D;
  /** Present when the batch has synthetic captions and their teacher features. */
  syn?: tf.Tensor2D;
}

/**
 * What one training forward produced, handed to every loss term. All tensors live inside the
 * gradient tape (a term's result is differentiated with respect to every optimised variable) and
 * are disposed by the step; terms must not keep them.
 */
export interface LossInputs {
  model: CLIP;
  batch: TrainBatch;
  /** L2-normalised image features [b, D]. */
  img: tf.Tensor2D;
  /** L2-normalised features of the ground-truth captions [b, D]. */
  gtTxt: tf.Tensor2D;
  /** L2-normalised features of the synthetic captions [b, D], when the batch has them. */
  synTxt?: tf.Tensor2D;
  /** Clamped logit scale s = min(exp(ℓ), 100). */
  scale: tf.Scalar;
  /** Teacher features, when teachers are configured and the batch carries teacherImg and teacherGt. */
  teacher?: TeacherFeatures;
  /** 0-based index of the optimiser step being computed. */
  step: number;
}

/**
 * A named loss term. The step minimises Σ weight·compute(x) over the terms whose weight is not 0
 * (weight-0 terms are neither computed nor logged); each term's unweighted value is logged under
 * its name. `weight` is read at every step, so a plug-in may change it between steps.
 */
export interface LossTerm {
  /** Unique within one list; the key in StepMetrics.losses / metrics.jsonl. */
  name: string;
  /** Default 1. */
  weight?: number;
  compute(x: LossInputs): tf.Scalar;
}

/** CLIP loss of each caption set: L_CLIP(U, V_gt) + L_CLIP(U, V_syn) (two separate b×b problems). */
export function contrastiveTerm(weight = 1): LossTerm {
  return {
    name: 'contrastive',
    weight,
    compute: (x) => {
      const gt = clipLoss(x.img, x.gtTxt, x.scale);
      return x.synTxt ? (gt.add(clipLoss(x.img, x.synTxt, x.scale)) as tf.Scalar) : gt;
    },
  };
}

/** Distillation loss of each caption set: L_KD(U, V_gt; Û, V̂_gt) + L_KD(U, V_syn; Û, V̂_syn) (see `distillLoss`). */
export function distillTerm(weight = 1): LossTerm {
  return {
    name: 'distill',
    weight,
    compute: (x) => {
      const t = x.teacher;
      if (!t) throw new MclipError("loss term 'distill' needs teachers and teacherImg, teacherGt in every batch");
      const gt = distillLoss(x.img, x.gtTxt, x.scale, t.img, t.gt, t.specs);
      if (!x.synTxt) return gt;
      if (!t.syn) throw new MclipError("loss term 'distill' with synthetic captions needs teacherSyn in every batch");
      return gt.add(distillLoss(x.img, x.synTxt, x.scale, t.img, t.syn, t.specs)) as tf.Scalar;
    },
  };
}

/**
 * MobileCLIP's reinforced loss (`reinforcedLoss`) as named terms: (1 − λ)·contrastive + λ·distill,
 * i.e. Σ_c (1 − λ) L_CLIP(c) + λ L_KD(c) over c ∈ {gt, syn}. At λ = 0 or 1 one term has weight 0
 * and is skipped, as in `reinforcedLoss`.
 */
export function reinforcedTerms(lambda: number): LossTerm[] {
  if (!(lambda >= 0 && lambda <= 1)) throw new MclipError(`reinforcedTerms: lambda must be in [0, 1], got ${lambda}`);
  return [contrastiveTerm(1 - lambda), distillTerm(lambda)];
}
