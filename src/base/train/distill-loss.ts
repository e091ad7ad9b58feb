import * as tf from '../tf.js';
import { MclipError } from '../../errors.js';
import { l2normalize } from '../model/clip.js';
import { clipLoss } from './clip-loss.js';

export { clipLoss } from './clip-loss.js';

/** One teacher: its embedding width (its slice of the stored features) and fixed inverse temperature 1/τ_k. */
export interface TeacherSpec {
  dim: number;
  logitScale: number;
}

/** The DataCompDR-12M teachers: two ViT-L-14 (openai, datacomp_xl), 768-d each, 1/τ = 100 (methods §2.1). */
export const DATACOMPDR_TEACHERS: readonly TeacherSpec[] = [
  { dim: 768, logitScale: 100 },
  { dim: 768, logitScale: 100 },
];

function checkTeacherShapes(b: number, teacherImg: tf.Tensor2D, teacherTxt: tf.Tensor2D, teachers: readonly TeacherSpec[]): void {
  if (teachers.length === 0) throw new MclipError('distillLoss: at least one teacher is required');
  const width = teachers.reduce((s, t) => s + t.dim, 0);
  for (const [what, t] of [['image', teacherImg], ['text', teacherTxt]] as const) {
    if (t.rank !== 2 || t.shape[0] !== b || t.shape[1] !== width) {
      throw new MclipError(`distillLoss: teacher ${what} features have shape [${t.shape}], expected [${b}, ${width}] (Σ teacher dims)`);
    }
  }
}

/**
 * Soft-target distillation loss of MobileCLIP's DistillClipLoss (methods §2.1). Student features
 * `studentImg`, `studentTxt` [b, D] must already be L2-normalised; `scale` is the student's
 * clamped logit scale. Teacher features [b, ΣD_k] are the K teachers' embeddings concatenated in
 * `teachers` order; each slice is L2-normalised here (idempotent for the stored DataCompDR halves,
 * which are already unit-norm). With T^k = (1/τ_k) Û^k V̂^kᵀ, P = mean_k rowsoftmax(T^k),
 * Q = mean_k rowsoftmax(T^kᵀ) and S = s U Vᵀ:
 *   L_KD = ½ [ −(1/b) Σ P ∘ log rowsoftmax(S) − (1/b) Σ Q ∘ log rowsoftmax(Sᵀ) ].
 * Teacher features are constants (no gradient flows into them).
 */
export function distillLoss(
  studentImg: tf.Tensor2D,
  studentTxt: tf.Tensor2D,
  scale: tf.Scalar | number,
  teacherImg: tf.Tensor2D,
  teacherTxt: tf.Tensor2D,
  teachers: readonly TeacherSpec[],
): tf.Scalar {
  const b = studentImg.shape[0];
  checkTeacherShapes(b, teacherImg, teacherTxt, teachers);
  return tf.tidy(() => {
    const s = tf.matMul(studentImg, studentTxt, false, true).mul(scale) as tf.Tensor2D;
    let p: tf.Tensor2D | null = null;
    let q: tf.Tensor2D | null = null;
    let off = 0;
    for (const t of teachers) {
      const ti = l2normalize(teacherImg.slice([0, off], [b, t.dim]));
      const tt = l2normalize(teacherTxt.slice([0, off], [b, t.dim]));
      off += t.dim;
      const logits = tf.matMul(ti, tt, false, true).mul(t.logitScale) as tf.Tensor2D;
      const pk = tf.softmax(logits) as tf.Tensor2D;
      const qk = tf.softmax(logits.transpose()) as tf.Tensor2D;
      p = (p ? p.add(pk) : pk) as tf.Tensor2D;
      q = (q ? q.add(qk) : qk) as tf.Tensor2D;
    }
    const k = teachers.length;
    const li = p!.div(k).mul(tf.logSoftmax(s)).sum().neg().div(b);
    const lt = q!.div(k).mul(tf.logSoftmax(s.transpose())).sum().neg().div(b);
    return li.add(lt).div(2) as tf.Scalar;
  });
}

export interface ReinforcedLossInput {
  /** Student image features [b, D], L2-normalised. */
  img: tf.Tensor2D;
  /** Student features of the ground-truth captions [b, D], L2-normalised. */
  gtTxt: tf.Tensor2D;
  /** Student features of the synthetic captions [b, D], L2-normalised; omitted → only L(gt). */
  synTxt?: tf.Tensor2D;
  /** Student logit scale s = min(exp(ℓ), 100). */
  scale: tf.Scalar | number;
  /** Stored teacher image features [b, ΣD_k] (required when λ > 0). */
  teacherImg?: tf.Tensor2D;
  /** Stored teacher features of the ground-truth captions [b, ΣD_k]. */
  teacherGt?: tf.Tensor2D;
  /** Stored teacher features of the synthetic captions [b, ΣD_k]. */
  teacherSyn?: tf.Tensor2D;
  teachers?: readonly TeacherSpec[];
  /** KD weight λ (`w_kd`; CLIP weight is 1 − λ). */
  lambda: number;
}

/**
 * MobileCLIP reinforced-training loss (methods §2.1–2.2): L_total = L(gt) + L(syn) with
 * L(c) = (1 − λ) L_CLIP(U, V_c) + λ L_KD(U, V_c; Û, V̂_c) — two separate b×b problems that share
 * the image features and the image-teacher rows (synthetic captions are never negatives for
 * ground-truth ones). Terms with weight 0 are not computed.
 */
export function reinforcedLoss(x: ReinforcedLossInput): tf.Scalar {
  const { lambda } = x;
  if (!(lambda >= 0 && lambda <= 1)) throw new MclipError(`reinforcedLoss: lambda must be in [0, 1], got ${lambda}`);
  if (lambda > 0) {
    if (!x.teacherImg || !x.teacherGt || !x.teachers) throw new MclipError('reinforcedLoss: lambda > 0 needs teacherImg, teacherGt and teachers');
    if (x.synTxt && !x.teacherSyn) throw new MclipError('reinforcedLoss: lambda > 0 with synthetic captions needs teacherSyn');
  }
  const one = (txt: tf.Tensor2D, teacherTxt: tf.Tensor2D | undefined): tf.Scalar =>
    tf.tidy(() => {
      let l: tf.Scalar = tf.scalar(0);
      if (lambda < 1) l = l.add(clipLoss(x.img, txt, typeof x.scale === 'number' ? tf.scalar(x.scale) : x.scale).mul(1 - lambda));
      if (lambda > 0) l = l.add(distillLoss(x.img, txt, x.scale, x.teacherImg!, teacherTxt!, x.teachers!).mul(lambda));
      return l;
    });
  return tf.tidy(() => {
    const gt = one(x.gtTxt, x.teacherGt);
    return (x.synTxt ? gt.add(one(x.synTxt, x.teacherSyn)) : gt) as tf.Scalar;
  });
}
