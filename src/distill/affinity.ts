/**
 * TinyCLIP's affinity mimicking (methods.md §3.1, `clip_soft_loss.py`): student and teacher each build a
 * b×b image–text affinity, row-softmaxed in both directions, and the student matches the teacher's:
 *
 *   A^{I2T}_ij = softmax_j(s · u_i·v_j)        A^{T2I}_ij = softmax_j(s · v_i·u_j)
 *   L_AM = ½ [ CE(A_t^{I2T}, A_s^{I2T}) + CE(A_t^{T2I}, A_s^{T2I}) ],   CE(P, Q) = −(1/b) Σ_ij P_ij log Q_ij
 *
 * The teacher distribution is the target. The student uses its own learnable (clamped) logit scale; the
 * teacher's is fixed — TinyCLIP forces 50 (τ = 0.02) whatever its checkpoint says. This is the
 * single-teacher case of MobileCLIP's L_KD (`distillLoss`, §2.1). Each affinity is computed within its
 * own model, so the teacher's width may differ from the student's.
 */
import * as tf from '../base/tf.js';
import { MclipError } from '../errors.js';
import { l2normalize } from '../base/model/clip.js';
import type { LossInputs, LossTerm, TrainBatch } from '../base/train/loss-terms.js';

/** TinyCLIP's teacher inverse temperature (`--logit-scale 50`). */
export const TINYCLIP_TEACHER_SCALE = 50;

/** The two directions of L_AM, each a soft-target cross-entropy CE(A_t, A_s). */
export interface AffinityDirections {
  /** CE(A_t^{I2T}, A_s^{I2T}): image rows over captions. */
  i2t: tf.Scalar;
  /** CE(A_t^{T2I}, A_s^{T2I}): caption rows over images. */
  t2i: tf.Scalar;
}

function checkPair(what: string, img: tf.Tensor, txt: tf.Tensor, b: number): void {
  if (img.rank !== 2 || txt.rank !== 2 || img.shape[0] !== b || txt.shape[0] !== b || img.shape[1] !== txt.shape[1]) {
    throw new MclipError(`affinityMimicking: ${what} features have shapes [${img.shape}] and [${txt.shape}], expected two [${b}, D]`);
  }
}

/**
 * Both directions of L_AM (see the file comment), for logging or checking them apart. `img`, `txt`
 * [b, D] and `teacherImg`, `teacherTxt` [b, D_t] must be L2-normalised; `scale` is the student's
 * clamped logit scale (differentiable when a tensor), `teacherScale` the teacher's fixed one. Uses
 * log-softmax on the student side. The teacher side is the target: differentiate w.r.t. student quantities
 * only (gradients taken w.r.t. the teacher's own tensors would move the target). Caller disposes both scalars.
 */
export function affinityDirections(
  img: tf.Tensor2D,
  txt: tf.Tensor2D,
  scale: tf.Scalar | number,
  teacherImg: tf.Tensor2D,
  teacherTxt: tf.Tensor2D,
  teacherScale: number = TINYCLIP_TEACHER_SCALE,
): AffinityDirections {
  const b = img.shape[0];
  if (!(b > 0)) throw new MclipError(`affinityMimicking: empty batch (image features [${img.shape}])`);
  checkPair('student', img, txt, b);
  checkPair('teacher', teacherImg, teacherTxt, b);
  if (!(Number.isFinite(teacherScale) && teacherScale > 0)) throw new MclipError(`affinityMimicking: teacherScale must be a positive number, got ${teacherScale}`);
  const [i2t, t2i] = tf.tidy(() => {
    const s = tf.matMul(img, txt, false, true).mul(scale) as tf.Tensor2D;
    const t = tf.matMul(teacherImg, teacherTxt, false, true).mul(teacherScale) as tf.Tensor2D;
    const ce = (target: tf.Tensor2D, student: tf.Tensor2D): tf.Scalar =>
      tf.softmax(target).mul(tf.logSoftmax(student)).sum().neg().div(b) as tf.Scalar;
    return [ce(t, s), ce(t.transpose(), s.transpose())];
  });
  return { i2t, t2i };
}

/**
 * TinyCLIP's affinity-mimicking loss L_AM (see the file comment): the mean of `affinityDirections`.
 * Features must be L2-normalised ([b, D] student, [b, D_t] teacher); `scale` is the student's clamped
 * logit scale, `teacherScale` the teacher's fixed inverse temperature (TinyCLIP: 50).
 */
export function affinityMimicking(
  img: tf.Tensor2D,
  txt: tf.Tensor2D,
  scale: tf.Scalar | number,
  teacherImg: tf.Tensor2D,
  teacherTxt: tf.Tensor2D,
  teacherScale: number = TINYCLIP_TEACHER_SCALE,
): tf.Scalar {
  return tf.tidy(() => {
    const { i2t, t2i } = affinityDirections(img, txt, scale, teacherImg, teacherTxt, teacherScale);
    return i2t.add(t2i).div(2) as tf.Scalar;
  });
}

/** A live teacher's features of one batch, [b, D_t] each. */
export interface LiveTeacherFeatures {
  img: tf.Tensor2D;
  /** Features of the ground-truth captions. */
  gt: tf.Tensor2D;
  /** Features of the synthetic captions; required when the batch has them. */
  syn?: tf.Tensor2D;
}

/**
 * A teacher run during training (another CLIP model in eval mode, an ONNX session wrapped into tensors, …):
 * the batch's teacher features, computed without gradient. It is called inside the step's gradient tape;
 * gradients only reach the optimised variables, so a teacher that shares none with the student needs no
 * detaching, but tf.js records its forward on the tape too (its saved activations live until the
 * backward pass ends). The term owns the returned tensors and disposes them: return fresh ones, never
 * tensors kept elsewhere. Features are L2-normalised again by the term (idempotent).
 */
export type LiveTeacher = (batch: TrainBatch, x: LossInputs) => LiveTeacherFeatures;

export interface AffinityTermOptions {
  /** Default 1. */
  weight?: number;
  /** The term's name (LossTerm.name). Default 'affinity'. */
  name?: string;
  /** The teacher's fixed inverse temperature. Default 50 (TinyCLIP); a stored teacher's `TeacherSpec.logitScale` is not used. */
  teacherScale?: number;
  /** 'stored': the batch's stored teacher features (`LossInputs.teacher`); or a live teacher. */
  source: 'stored' | LiveTeacher;
  /** Stored source: which teacher of `LossInputs.teacher.specs` (0-based; its column slice by the specs' dims). Default 0. */
  teacher?: number;
}

/** The stored teacher `k`'s L2-normalised column slice of [b, ΣD_k] features. */
function storedSlice(x: LossInputs, name: string, k: number): { img: tf.Tensor2D; gt: tf.Tensor2D; syn?: tf.Tensor2D } {
  const t = x.teacher;
  if (!t) throw new MclipError(`loss term '${name}' (stored teacher) needs teachers and teacherImg, teacherGt in every batch`);
  if (k >= t.specs.length) throw new MclipError(`loss term '${name}': teacher ${k} requested, the batch has ${t.specs.length}`);
  const width = t.specs.reduce((s, spec) => s + spec.dim, 0);
  const off = t.specs.slice(0, k).reduce((s, spec) => s + spec.dim, 0);
  const dim = t.specs[k].dim;
  const b = x.img.shape[0];
  const cut = (what: string, a: tf.Tensor2D): tf.Tensor2D => {
    if (a.shape[0] !== b || a.shape[1] !== width) throw new MclipError(`loss term '${name}': stored teacher ${what} features have shape [${a.shape}], expected [${b}, ${width}] (Σ teacher dims)`);
    return l2normalize(a.slice([0, off], [b, dim])) as tf.Tensor2D;
  };
  return { img: cut('image', t.img), gt: cut('gt', t.gt), syn: x.synTxt && t.syn ? cut('syn', t.syn) : undefined };
}

/**
 * TinyCLIP's affinity mimicking as a loss term: L_AM(U, V_gt; Û, V̂_gt) + L_AM(U, V_syn; Û, V̂_syn) (the
 * synthetic captions' term only when the batch has them, summed like `distillTerm`). The teacher
 * features come from the batch's stored ones (teacher `teacher`'s column slice, L2-normalised) or from
 * a live teacher called at every step. Under data-parallel training the loss sees the whole batch while
 * `LossInputs.batch` is this rank's slice, so a live teacher's rows do not match (an error); stored
 * features are whole-batch and work.
 */
export function affinityTerm(o: AffinityTermOptions): LossTerm {
  const name = o.name ?? 'affinity';
  const teacherScale = o.teacherScale ?? TINYCLIP_TEACHER_SCALE;
  const k = o.teacher ?? 0;
  if (!(Number.isFinite(teacherScale) && teacherScale > 0)) throw new MclipError(`affinityTerm: teacherScale must be a positive number, got ${teacherScale}`);
  if (!(Number.isInteger(k) && k >= 0)) throw new MclipError(`affinityTerm: teacher must be a teacher index ≥ 0, got ${k}`);
  if (o.teacher !== undefined && o.source !== 'stored') throw new MclipError("affinityTerm: option 'teacher' picks a stored teacher, but the source is a live teacher");
  const source = o.source;
  return {
    name,
    weight: o.weight ?? 1,
    compute: (x) => {
      const live = source === 'stored' ? undefined : source(x.batch, x);
      try {
        return tf.tidy(() => {
          let t: { img: tf.Tensor2D; gt: tf.Tensor2D; syn?: tf.Tensor2D };
          if (live) {
            const b = x.img.shape[0];
            for (const [what, a] of [['image', live.img], ['gt', live.gt], ['syn', live.syn]] as const) {
              if (a && (a.rank !== 2 || a.shape[0] !== b)) throw new MclipError(`loss term '${name}': live teacher ${what} features have shape [${a.shape}], expected [${b}, D_t]`);
            }
            t = { img: l2normalize(live.img) as tf.Tensor2D, gt: l2normalize(live.gt) as tf.Tensor2D, syn: live.syn && (l2normalize(live.syn) as tf.Tensor2D) };
          } else {
            t = storedSlice(x, name, k);
          }
          const gt = affinityMimicking(x.img, x.gtTxt, x.scale, t.img, t.gt, teacherScale);
          if (!x.synTxt) return gt;
          if (!t.syn) throw new MclipError(`loss term '${name}' with synthetic captions needs ${live ? "the live teacher's syn features" : 'teacherSyn in every batch'}`);
          return gt.add(affinityMimicking(x.img, x.synTxt, x.scale, t.img, t.syn, teacherScale)) as tf.Scalar;
        });
      } finally {
        if (live) tf.dispose([live.img, live.gt, ...(live.syn ? [live.syn] : [])]);
      }
    },
  };
}
