/**
 * What a TinyCLIP stage needs of one tower's learnable masks (`TextGates`, `ImageGates`, `ViTGates`): the ln α
 * variables (the `masks` parameter group), the hooks that put a sample on the model at every forward, the
 * differentiable expected size of the tower's prunable parameters (for the joint sparsity of both towers,
 * methods.md §3.4) and the physical pruning of a model by the deterministic masks (§3.7).
 */
import type * as tf from '../../base/tf.js';
import type { CLIP } from '../../base/model/clip.js';
import type { SizeTerm } from './expected-size.js';

export type Tower = 'text' | 'image';

export interface TowerGates {
  readonly tower: Tower;
  /** Every ln α variable. */
  readonly logAlphas: tf.Variable[];
  /** Puts the masks on the model (build the optimiser afterwards: a tower may replace modules). */
  install(): void;
  /** Takes the masks off (idempotent). */
  remove(): void;
  /** E[N] and N₀ of the tower's prunable parameters (differentiable in ln α; call inside a tidy or the tape). */
  expectedSize(): SizeTerm;
  /** Clamps every ln α (after each optimiser step). */
  clamp(): void;
  /**
   * The prunable size of the model `prune` gives with this `countShift` (see `deterministicMask`): the size
   * formulas at the indicators of the deterministic masks. Non-decreasing in `countShift`.
   */
  prunedSize(countShift?: number): number;
  /**
   * `model` (this tower's layout: the gated model or one pruned on the other tower only) pruned by the
   * deterministic masks (counted with `countShift`, default 0): a new dense model; `model` is left as it is.
   */
  prune(model: CLIP, countShift?: number): CLIP;
  dispose(): void;
}
