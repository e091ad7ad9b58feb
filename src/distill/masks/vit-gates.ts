/**
 * Learnable TinyCLIP masks on a ViT image tower (methods.md §3.3–§3.4): hard-concrete gates for the hidden
 * channels (shared by the whole residual stream) and the heads and FFN units of every block, put on the
 * model through `applyViTMasks`.
 *
 * A pre-forward hook on the image tower draws the masks at every forward: in train mode one sample per
 * forward (shared by the batch, differentiable with respect to ln α — it is drawn inside the gradient
 * tape of the step), in eval mode the deterministic masks of §3.7 step 1. The expected sparsity ŝ of the
 * tower is differentiable too (keep probabilities), for the Lagrangian. A `TowerGates` (tower 'image'), so a
 * TinyCLIP stage drives it as it does the text and MCi gates; `prune` is `pruneViT` by the deterministic masks.
 *
 * Counted (the prunable size N₀): every block's attention and FFN weights and biases (see expected-size.ts).
 * Not counted, as in TinyCLIP: the conv stem, the CLS token and positional table, the LayerNorms and the
 * projection, although the hidden mask shrinks all but the stem's inner convs too.
 */
import * as tf from '../../base/tf.js';
import { MclipError } from '../../errors.js';
import type { CLIP } from '../../base/model/clip.js';
import type { HookHandle } from '../../base/nn/module.js';
import { HardConcreteGate } from './hard-concrete.js';
import { sumSizes, transformerLayerGeometry, transformerLayerSize, type SizeTerm } from './expected-size.js';
import { pruneViT } from './prune-vit.js';
import type { TowerGates } from './tower-gates.js';
import { applyViTMasks, vitBlocksOf, vitMaskSizes, type AppliedViTMasks, type ViTMasks, type ViTMaskSet, type ViTMaskValues } from './vit-masks.js';

interface BlockGates {
  heads: HardConcreteGate;
  ffn: HardConcreteGate;
}

export interface ViTGateOptions {
  /** Seed of the mask samples (each forward's seed is derived from it and a counter). */
  seed?: number;
  /** Name prefix of the ln α variables (tf variable names are global). */
  name?: string;
  /** Initial ln α of every gate (default 10, TinyCLIP's; clamped to ln 100 after the first step). */
  initLogAlpha?: number;
}

let instances = 0;

export class ViTGates implements TowerGates {
  readonly tower = 'image' as const;
  readonly hidden: HardConcreteGate;
  readonly blocks: BlockGates[];
  private applied: AppliedViTMasks | null = null;
  private hook: HookHandle | null = null;
  private owned: tf.Tensor[] = [];
  private draws = 0;
  private readonly seed: number;

  /** Throws when `model`'s image tower is not a ViT. */
  constructor(
    private readonly model: CLIP,
    opts: ViTGateOptions = {},
  ) {
    const sizes = vitMaskSizes(model);
    const name = opts.name ?? `vit_gates_${instances++}`;
    this.seed = opts.seed ?? 0;
    const init = opts.initLogAlpha;
    this.hidden = new HardConcreteGate(sizes.hidden, { name: `${name}_hidden`, initLogAlpha: init });
    this.blocks = sizes.blocks.map((b, i) => ({
      heads: new HardConcreteGate(b.heads, { name: `${name}_${i}_heads`, initLogAlpha: init }),
      ffn: new HardConcreteGate(b.ffn, { name: `${name}_${i}_ffn`, initLogAlpha: init }),
    }));
  }

  /** Every ln α variable (the `masks` parameter group). */
  get logAlphas(): tf.Variable[] {
    return [this.hidden, ...this.blocks.flatMap((b) => [b.heads, b.ffn])].map((g) => g.logAlpha);
  }

  /** Installs the masks on the model (build the optimiser afterwards: the LayerNorms are replaced). */
  install(): void {
    if (this.applied) throw new MclipError('ViT gates: already installed');
    this.applied = applyViTMasks(this.model, this.ownMasks(this.deterministicSet()));
    this.hook = this.model.imageEncoder.registerForwardPreHook(() => {
      this.applied!.setMasks(this.ownMasks(this.model.imageEncoder.training ? this.sampleSet() : this.deterministicSet()));
    });
  }

  /** Takes the masks off the model (the LayerNorms are plain again; rebuild any optimiser). */
  remove(): void {
    this.hook?.remove();
    this.hook = null;
    this.applied?.remove();
    this.applied = null;
    tf.dispose(this.owned);
    this.owned = [];
  }

  /** Keeps the masks the hooks read until the next draw (they outlive the step's tidy scopes), frees the previous ones. */
  private ownMasks(set: ViTMaskSet): ViTMaskSet {
    const ts = [set.hidden, ...set.blocks.flatMap((b) => [b?.heads, b?.ffn])].filter((t): t is tf.Tensor1D => t != null);
    for (const t of ts) tf.keep(t);
    tf.dispose(this.owned);
    this.owned = ts;
    return set;
  }

  private sampleSet(): ViTMaskSet {
    const s = (g: HardConcreteGate) => g.sample(this.seed * 1_000_003 + this.draws++ * 7919) as tf.Tensor1D;
    return { hidden: s(this.hidden), blocks: this.blocks.map((b) => ({ heads: s(b.heads), ffn: s(b.ffn) })) };
  }

  private deterministicSet(): ViTMaskSet {
    const v = this.deterministic();
    const t = (a: Float32Array | undefined) => (a ? tf.tensor1d(a) : undefined);
    return { hidden: t(v.hidden), blocks: v.blocks.map((b) => (b ? { heads: t(b.heads), ffn: t(b.ffn) } : null)) };
  }

  /** The deterministic masks (§3.7 step 1), for pruning; `countShift`: see `deterministicMask`. */
  deterministic(countShift = 0): ViTMaskValues {
    return {
      hidden: this.hidden.deterministic(countShift),
      blocks: this.blocks.map((b) => ({ heads: b.heads.deterministic(countShift), ffn: b.ffn.deterministic(countShift) })),
    };
  }

  /** E[N] and N₀ of the tower's prunable parameters (differentiable in ln α; call inside a tidy or the tape). */
  expectedSize(): SizeTerm {
    return this.sizeOf({
      hidden: this.hidden.keepProbability(),
      blocks: this.blocks.map((g) => ({ heads: g.heads.keepProbability(), ffn: g.ffn.keepProbability() })),
    });
  }

  /** The prunable size of the model `prune(model, countShift)` gives (the size formulas at the 0/1 indicators of the deterministic masks). */
  prunedSize(countShift = 0): number {
    const v = this.deterministic(countShift);
    return tf.tidy(() => {
      const ind = (a: Float32Array | undefined) => (a ? tf.tensor1d(a.map((x) => (x !== 0 ? 1 : 0))) : undefined);
      const s = this.sizeOf({ hidden: ind(v.hidden), blocks: v.blocks.map((b) => ({ heads: ind(b?.heads), ffn: ind(b?.ffn) })) });
      return Math.round(s.expected.dataSync()[0]);
    });
  }

  /** The size formulas of the tower's blocks at per-unit keep probabilities (or indicators). */
  private sizeOf(p: ViTMasks<tf.Tensor>): SizeTerm {
    const blocks = vitBlocksOf(this.model);
    const parts = blocks.map((m, i) => {
      const b = p.blocks[i];
      return transformerLayerSize({ channels: p.hidden, heads: b?.heads, ffn: b?.ffn }, transformerLayerGeometry(m));
    });
    return sumSizes(parts);
  }

  /** ŝ = 1 − E[N]/N₀. */
  expectedSparsity(): tf.Scalar {
    return tf.tidy(() => {
      const s = this.expectedSize();
      return tf.scalar(1).sub(s.expected.div(s.full)) as tf.Scalar;
    });
  }

  /** Clamps every ln α (after each optimiser step). */
  clamp(): void {
    this.hidden.clampLogAlpha();
    for (const b of this.blocks) {
      b.heads.clampLogAlpha();
      b.ffn.clampLogAlpha();
    }
  }

  /** `model` (this ViT's layout) pruned by the deterministic masks (counted with `countShift`): a new dense model; `model` is left as it is. */
  prune(model: CLIP, countShift = 0): CLIP {
    return pruneViT(model, this.deterministic(countShift)).model;
  }

  dispose(): void {
    this.remove();
    this.hidden.dispose();
    for (const b of this.blocks) {
      b.heads.dispose();
      b.ffn.dispose();
    }
  }
}

/** N₀ of a ViT image tower — its prunable parameter count (every mask open), for the reached sparsity of a pruned model. */
export function vitPrunableSize(model: CLIP): number {
  return tf.tidy(() => sumSizes(vitBlocksOf(model).map((b) => transformerLayerSize({}, transformerLayerGeometry(b)))).full);
}
