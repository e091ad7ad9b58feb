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
import type { CLIP } from '../../base/model/clip.js';
import { GateSet, maskTensor, type GateOptions, type Indicator } from './gate-set.js';
import { HardConcreteGate } from './hard-concrete.js';
import { sumSizes, transformerLayerGeometry, transformerLayerSize, type SizeTerm } from './expected-size.js';
import { pruneViT } from './prune-vit.js';
import type { TowerGates } from './tower-gates.js';
import { applyViTMasks, vitBlocksOf, vitMaskSizes, type AppliedViTMasks, type ViTMasks, type ViTMaskSet, type ViTMaskValues } from './vit-masks.js';

interface BlockGates {
  heads: HardConcreteGate;
  ffn: HardConcreteGate;
}

export type ViTGateOptions = GateOptions;

let instances = 0;

export class ViTGates extends GateSet<ViTMaskSet, ViTMaskValues> implements TowerGates {
  readonly tower = 'image' as const;
  readonly hidden: HardConcreteGate;
  readonly blocks: BlockGates[];

  /** Throws when `model`'s image tower is not a ViT. */
  constructor(model: CLIP, opts: ViTGateOptions = {}) {
    super(model, opts.seed ?? 0, 'ViT gates');
    const sizes = vitMaskSizes(model);
    const name = opts.name ?? `vit_gates_${instances++}`;
    const init = opts.initLogAlpha;
    this.hidden = new HardConcreteGate(sizes.hidden, { name: `${name}_hidden`, initLogAlpha: init });
    this.blocks = sizes.blocks.map((b, i) => ({
      heads: new HardConcreteGate(b.heads, { name: `${name}_${i}_heads`, initLogAlpha: init }),
      ffn: new HardConcreteGate(b.ffn, { name: `${name}_${i}_ffn`, initLogAlpha: init }),
    }));
  }

  protected gates(): HardConcreteGate[] {
    return [this.hidden, ...this.blocks.flatMap((b) => [b.heads, b.ffn])];
  }

  protected applyMasks(set: ViTMaskSet): AppliedViTMasks {
    return applyViTMasks(this.model, set);
  }

  protected maskTensors(set: ViTMaskSet): Array<tf.Tensor1D | undefined> {
    return [set.hidden, ...set.blocks.flatMap((b) => [b?.heads, b?.ffn])];
  }

  protected sampleSet(): { set: ViTMaskSet } {
    const s = (g: HardConcreteGate) => this.draw(g);
    return { set: { hidden: s(this.hidden), blocks: this.blocks.map((b) => ({ heads: s(b.heads), ffn: s(b.ffn) })) } };
  }

  protected deterministicSet(): ViTMaskSet {
    const v = this.deterministic();
    const t = maskTensor;
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

  protected indicatorSize(v: ViTMaskValues, ind: Indicator): SizeTerm {
    return this.sizeOf({ hidden: ind(v.hidden), blocks: v.blocks.map((b) => ({ heads: ind(b?.heads), ffn: ind(b?.ffn) })) });
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

  /** `model` (this ViT's layout) pruned by the deterministic masks (counted with `countShift`): a new dense model; `model` is left as it is. */
  prune(model: CLIP, countShift = 0): CLIP {
    return pruneViT(model, this.deterministic(countShift)).model;
  }
}

/** N₀ of a ViT image tower — its prunable parameter count (every mask open), for the reached sparsity of a pruned model. */
export function vitPrunableSize(model: CLIP): number {
  return tf.tidy(() => sumSizes(vitBlocksOf(model).map((b) => transformerLayerSize({}, transformerLayerGeometry(b)))).full);
}
