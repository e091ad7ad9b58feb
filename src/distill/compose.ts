/**
 * The compression objective as weighted loss terms, TinyCLIP's and MobileCLIP's in one form:
 *
 *   L = (1 − λ)·L_CLIP + λ·[(1 − α)·L_distill + α·L_sparsity]
 *
 * L_CLIP is `contrastiveTerm`; L_distill is TinyCLIP's affinity mimicking (`affinityTerm`, methods.md §3.1)
 * or MobileCLIP's reinforced KD (`distillTerm`, §2.1); L_sparsity is a term built elsewhere (the sparsity
 * Lagrangian L_lag of §3.5). Each term is summed over the gt and synthetic caption sets by the term itself.
 */
import { MclipError } from '../errors.js';
import { contrastiveTerm, distillTerm, type LossTerm } from '../base/train/loss-terms.js';
import { TINYCLIP_TEACHER_SCALE, affinityTerm, type LiveTeacher } from './affinity.js';

/** 'affinity': TinyCLIP's L_AM against one teacher; 'kd': MobileCLIP's L_KD against all stored teachers. */
export type DistillKind = 'affinity' | 'kd';

interface TinyclipCommonOptions {
  distill: DistillKind;
  /** The sparsity term (e.g. the Lagrangian); required when α > 0 or with form 'tinyclip' to prune. */
  sparsity?: LossTerm;
  /** 'affinity' only: the teacher's fixed inverse temperature. Default 50 (TinyCLIP). */
  teacherScale?: number;
  /** 'affinity' only: where the teacher features come from. Default 'stored'. */
  source?: 'stored' | LiveTeacher;
  /** 'affinity' with stored features only: which stored teacher (0-based). Default 0. */
  teacher?: number;
}

/** The weighted form L = (1 − λ)·L_CLIP + λ·[(1 − α)·L_distill + α·L_sparsity]. */
export interface WeightedTinyclipOptions extends TinyclipCommonOptions {
  form?: 'weighted';
  /** Distillation-side weight λ ∈ [0, 1] (L_CLIP gets 1 − λ). */
  lambda: number;
  /** Sparsity share α ∈ [0, 1] of the distillation side. */
  alpha: number;
}

/**
 * TinyCLIP's own form L = L_distill + L_sparsity (no contrastive term), optionally with the contrastive term mixed
 * into the task side: L = (1 − λ)·L_CLIP + λ·L_distill + L_sparsity. The sparsity term keeps weight 1 (it is a
 * constraint with its own learned multipliers, not a share of the objective).
 */
export interface SumTinyclipOptions extends TinyclipCommonOptions {
  form: 'tinyclip';
  /** Distillation share λ ∈ [0, 1] of the task side (L_CLIP gets 1 − λ). Default 1: TinyCLIP's L_distill + L_sparsity. */
  lambda?: number;
  alpha?: undefined;
}

export type TinyclipTermsOptions = WeightedTinyclipOptions | SumTinyclipOptions;

/**
 * TinyCLIP's defaults: L = L_AM + L_lag (`--distillation-alpha 1.0`, so no contrastive term; teacher scale 50;
 * stored teacher features). In the weighted form that is λ = 1 with an α giving both L_AM and L_sparsity
 * weight 1 — which no α ∈ [0, 1] does (λ = 1, α = ½ gives ½·L_AM + ½·L_lag, the same objective at half the
 * scale), so the paper's unweighted sum is its own form, `form: 'tinyclip'`: weights L_AM·1 + L_lag·1. Add the
 * `sparsity` term (and a live `source` if the teacher runs in the loop):
 * `tinyclipTerms({ ...tinyclipDefaults(), sparsity: lagrangian })`. Without a sparsity term it is TinyCLIP's
 * manual-inheritance objective, L_AM alone.
 */
export function tinyclipDefaults(): SumTinyclipOptions {
  return { form: 'tinyclip', distill: 'affinity', teacherScale: TINYCLIP_TEACHER_SCALE, source: 'stored' };
}

function checkUnit(what: string, v: number): void {
  if (!(v >= 0 && v <= 1)) throw new MclipError(`tinyclipTerms: ${what} must be in [0, 1], got ${v}`);
}

/**
 * The terms of L = (1 − λ)·L_CLIP + λ·[(1 − α)·L_distill + α·L_sparsity] (`form: 'weighted'`, the default), or
 * of TinyCLIP's L = L_distill + L_sparsity (`form: 'tinyclip'`, see `tinyclipDefaults`), in the order
 * contrastive, distill ('affinity' or 'distill'), sparsity. Terms of weight 0 stay in the list (the step skips
 * them), as in `reinforcedTerms`; without a sparsity term (allowed only when α = 0, or with form 'tinyclip')
 * there is none. The sparsity term is wrapped, not copied: its weight is read at every step and multiplied by
 * its share, so a plug-in that changes the original's weight still does.
 */
export function tinyclipTerms(o: TinyclipTermsOptions): LossTerm[] {
  if (o.distill !== 'affinity' && o.distill !== 'kd') throw new MclipError(`tinyclipTerms: distill must be 'affinity' or 'kd', got ${String(o.distill)}`);
  if (o.distill === 'kd') {
    if (o.source !== undefined && o.source !== 'stored') throw new MclipError("tinyclipTerms: distill 'kd' uses the stored teacher features; a live teacher needs distill 'affinity'");
    if (o.teacherScale !== undefined) throw new MclipError("tinyclipTerms: teacherScale applies to distill 'affinity'; 'kd' uses each TeacherSpec's logitScale");
    if (o.teacher !== undefined) throw new MclipError("tinyclipTerms: option 'teacher' applies to distill 'affinity'; 'kd' uses every stored teacher");
  }
  let w: { contrastive: number; distill: number; sparsity: number };
  if (o.form === 'tinyclip') {
    if (o.alpha !== undefined) throw new MclipError("tinyclipTerms: form 'tinyclip' adds L_sparsity at weight 1; alpha belongs to form 'weighted'");
    const lambda = o.lambda ?? 1;
    checkUnit('lambda', lambda);
    w = { contrastive: 1 - lambda, distill: lambda, sparsity: 1 };
  } else {
    if (o.form !== undefined && o.form !== 'weighted') throw new MclipError(`tinyclipTerms: form must be 'weighted' or 'tinyclip', got ${String(o.form)}`);
    checkUnit('lambda', o.lambda);
    checkUnit('alpha', o.alpha);
    if (o.alpha > 0 && !o.sparsity) throw new MclipError(`tinyclipTerms: alpha = ${o.alpha} > 0 needs a sparsity term (option 'sparsity')`);
    w = { contrastive: 1 - o.lambda, distill: o.lambda * (1 - o.alpha), sparsity: o.lambda * o.alpha };
  }
  const distill =
    o.distill === 'kd'
      ? distillTerm(w.distill)
      : affinityTerm({ weight: w.distill, teacherScale: o.teacherScale, source: o.source ?? 'stored', teacher: o.teacher });
  const terms = [contrastiveTerm(w.contrastive), distill];
  const s = o.sparsity;
  if (s) {
    const share = w.sparsity;
    terms.push({
      name: s.name,
      get weight() {
        return share * (s.weight ?? 1);
      },
      compute: (x) => s.compute(x),
    });
  }
  return terms;
}
