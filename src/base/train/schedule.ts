/**
 * Learning-rate schedules of open_clip (`open_clip/training/scheduler.py`), as pure functions of
 * the 0-based step index (open_clip calls the adjuster with the step before each optimiser step).
 */

export interface CosineSchedule {
  baseLr: number;
  /** Warm-up steps: lr = baseLr·(step+1)/warmup for step < warmup. */
  warmup: number;
  /** Total number of steps (cosine reaches 0 at step = steps). */
  steps: number;
}

/** open_clip `cosine_lr`: linear warm-up to baseLr, then ½(1 + cos(π e/es))·baseLr with e = step − warmup, es = steps − warmup. Past `steps` the lr stays 0 (open_clip's cosine would rise again). */
export function cosineLr(step: number, s: CosineSchedule): number {
  if (step < s.warmup) return (s.baseLr * (step + 1)) / s.warmup;
  const e = step - s.warmup;
  const es = s.steps - s.warmup;
  if (es <= 0) return s.baseLr;
  return 0.5 * (1 + Math.cos((Math.PI * Math.min(e, es)) / es)) * s.baseLr;
}

/** open_clip `const_lr`: warm-up, then constant. */
export function constLr(step: number, s: Omit<CosineSchedule, 'steps'>): number {
  return step < s.warmup ? (s.baseLr * (step + 1)) / s.warmup : s.baseLr;
}
