/**
 * Learnable TinyCLIP masks on a text tower (methods.md §3.3–§3.4): hard-concrete gates for the hidden
 * channels (shared by the whole residual stream), the heads and FFN units of every transformer layer and
 * the ConvFFN hidden width of every `mct` RepMixer block, put on the model through `applyTextMasks`.
 *
 * A pre-forward hook on the text tower draws the masks at every forward: in train mode one sample per
 * forward (shared by the batch, differentiable with respect to ln α — it is drawn inside the gradient
 * tape of the step), in eval mode the deterministic masks of §3.7 step 1. The expected sparsity ŝ of the
 * tower is differentiable too (keep probabilities), for the Lagrangian.
 *
 * Counted (the prunable size N₀): every transformer layer's attention and FFN weights and biases, every
 * RepMixer block's mixer, ConvFFN and layer scales (see expected-size.ts). Not counted, as in TinyCLIP:
 * the token and positional tables, the final LayerNorm and the projection, although the hidden mask
 * shrinks them too.
 */
import * as tf from '../../base/tf.js';
import { MclipError } from '../../errors.js';
import type { CLIP } from '../../base/model/clip.js';
import { RepMixerBlock } from '../../base/layers/repmixer-block.js';
import { TransformerEncoder } from '../../base/layers/transformer-encoder.js';
import { GateSet, maskTensor, type GateOptions, type Indicator } from './gate-set.js';
import { HardConcreteGate } from './hard-concrete.js';
import { repMixerBlockGeometry, repMixerBlockSize, sumSizes, transformerLayerGeometry, transformerLayerSize, type SizeTerm } from './expected-size.js';
import { pruneText } from './prune-text.js';
import type { TowerGates } from './tower-gates.js';
import { applyTextMasks, textMaskSizes, type AppliedTextMasks, type TextMasks, type TextMaskSet, type TextMaskValues } from './text-masks.js';

interface LayerGates {
  heads?: HardConcreteGate;
  ffn: HardConcreteGate;
}

export type TextGateOptions = GateOptions;

let instances = 0;

export class TextGates extends GateSet<TextMaskSet, TextMaskValues> implements TowerGates {
  readonly tower = 'text' as const;
  readonly hidden: HardConcreteGate;
  readonly layers: LayerGates[];

  constructor(model: CLIP, opts: TextGateOptions = {}) {
    super(model, opts.seed ?? 0, 'text gates');
    const sizes = textMaskSizes(model);
    const name = opts.name ?? `text_gates_${instances++}`;
    const init = opts.initLogAlpha;
    this.hidden = new HardConcreteGate(sizes.hidden, { name: `${name}_hidden`, initLogAlpha: init });
    this.layers = sizes.layers.map((l, i) => ({
      heads: l.heads != null ? new HardConcreteGate(l.heads, { name: `${name}_${i}_heads`, initLogAlpha: init }) : undefined,
      ffn: new HardConcreteGate(l.ffn, { name: `${name}_${i}_ffn`, initLogAlpha: init }),
    }));
  }

  protected gates(): HardConcreteGate[] {
    return [this.hidden, ...this.layers.flatMap((l) => (l.heads ? [l.heads, l.ffn] : [l.ffn]))];
  }

  protected applyMasks(set: TextMaskSet): AppliedTextMasks {
    return applyTextMasks(this.model, set);
  }

  protected maskTensors(set: TextMaskSet): Array<tf.Tensor1D | undefined> {
    return [set.hidden, ...set.layers.flatMap((l) => [l?.heads, l?.ffn])];
  }

  protected sampleSet(): { set: TextMaskSet } {
    const s = (g: HardConcreteGate) => this.draw(g);
    return { set: { hidden: s(this.hidden), layers: this.layers.map((l) => ({ heads: l.heads ? s(l.heads) : undefined, ffn: s(l.ffn) })) } };
  }

  protected deterministicSet(): TextMaskSet {
    const v = this.deterministic();
    const t = maskTensor;
    return { hidden: t(v.hidden), layers: v.layers.map((l) => (l ? { heads: t(l.heads), ffn: t(l.ffn) } : null)) };
  }

  /** The deterministic masks (§3.7 step 1), for pruning. */
  deterministic(countShift = 0): TextMaskValues {
    return {
      hidden: this.hidden.deterministic(countShift),
      layers: this.layers.map((l) => ({ heads: l.heads?.deterministic(countShift), ffn: l.ffn.deterministic(countShift) })),
    };
  }

  /** E[N] and N₀ of the tower's prunable parameters (differentiable in ln α; call inside a tidy or the tape). */
  expectedSize(): SizeTerm {
    return this.sizeOf({
      hidden: this.hidden.keepProbability(),
      layers: this.layers.map((g) => ({ heads: g.heads?.keepProbability(), ffn: g.ffn.keepProbability() })),
    });
  }

  protected indicatorSize(v: TextMaskValues, ind: Indicator): SizeTerm {
    return this.sizeOf({ hidden: ind(v.hidden), layers: v.layers.map((l) => ({ heads: ind(l?.heads), ffn: ind(l?.ffn) })) });
  }

  /** The size formulas of the tower's layers at per-unit keep probabilities (or indicators). */
  private sizeOf(p: TextMasks<tf.Tensor>): SizeTerm {
    const blocks = this.model.textEncoder.transformer.modules();
    const parts = this.layers.map((_, i) => {
      const m = blocks[i];
      const l = p.layers[i];
      if (m instanceof TransformerEncoder) return transformerLayerSize({ channels: p.hidden, heads: l?.heads, ffn: l?.ffn }, transformerLayerGeometry(m));
      if (m instanceof RepMixerBlock) return repMixerBlockSize({ channels: p.hidden, ffn: l?.ffn }, repMixerBlockGeometry(m));
      throw new MclipError(`text gates: layer ${i} is a ${m.constructor.name}`);
    });
    return sumSizes(parts);
  }

  prune(model: CLIP, countShift = 0): CLIP {
    return pruneText(model, this.deterministic(countShift)).model;
  }
}

/** N₀ of a text tower — its prunable parameter count (every mask open), for the reached sparsity of a pruned model. */
export function textPrunableSize(model: CLIP): number {
  return tf.tidy(() => {
    const blocks = model.textEncoder.transformer.modules();
    const parts = blocks.map((m, i) => {
      if (m instanceof TransformerEncoder) return transformerLayerSize({}, transformerLayerGeometry(m));
      if (m instanceof RepMixerBlock) return repMixerBlockSize({}, repMixerBlockGeometry(m));
      throw new MclipError(`text tower: layer ${i} is a ${m.constructor.name}`);
    });
    return sumSizes(parts).full;
  });
}
