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
import type { HookHandle } from '../../base/nn/module.js';
import { RepMixerBlock } from '../../base/layers/repmixer-block.js';
import { TransformerEncoder } from '../../base/layers/transformer-encoder.js';
import { HardConcreteGate } from './hard-concrete.js';
import { repMixerBlockGeometry, repMixerBlockSize, sumSizes, transformerLayerGeometry, transformerLayerSize, type SizeTerm } from './expected-size.js';
import { pruneText } from './prune-text.js';
import type { TowerGates } from './tower-gates.js';
import { applyTextMasks, textMaskSizes, type AppliedTextMasks, type TextMasks, type TextMaskSet, type TextMaskValues } from './text-masks.js';

interface LayerGates {
  heads?: HardConcreteGate;
  ffn: HardConcreteGate;
}

export interface TextGateOptions {
  /** Seed of the mask samples (each forward's seed is derived from it and a counter). */
  seed?: number;
  /** Name prefix of the ln α variables (tf variable names are global). */
  name?: string;
  /** Initial ln α of every gate (default 10, TinyCLIP's; clamped to ln 100 after the first step). */
  initLogAlpha?: number;
}

let instances = 0;

export class TextGates implements TowerGates {
  readonly tower = 'text' as const;
  readonly hidden: HardConcreteGate;
  readonly layers: LayerGates[];
  private applied: AppliedTextMasks | null = null;
  private hook: HookHandle | null = null;
  private owned: tf.Tensor[] = [];
  private draws = 0;
  private readonly seed: number;

  constructor(
    private readonly model: CLIP,
    opts: TextGateOptions = {},
  ) {
    const sizes = textMaskSizes(model);
    const name = opts.name ?? `text_gates_${instances++}`;
    this.seed = opts.seed ?? 0;
    const init = opts.initLogAlpha;
    this.hidden = new HardConcreteGate(sizes.hidden, { name: `${name}_hidden`, initLogAlpha: init });
    this.layers = sizes.layers.map((l, i) => ({
      heads: l.heads != null ? new HardConcreteGate(l.heads, { name: `${name}_${i}_heads`, initLogAlpha: init }) : undefined,
      ffn: new HardConcreteGate(l.ffn, { name: `${name}_${i}_ffn`, initLogAlpha: init }),
    }));
  }

  /** Every ln α variable (the `masks` parameter group). */
  get logAlphas(): tf.Variable[] {
    return [this.hidden, ...this.layers.flatMap((l) => (l.heads ? [l.heads, l.ffn] : [l.ffn]))].map((g) => g.logAlpha);
  }

  /** Installs the masks on the model (build the optimiser afterwards: the LayerNorms are replaced). */
  install(): void {
    if (this.applied) throw new MclipError('text gates: already installed');
    this.applied = applyTextMasks(this.model, this.ownMasks(this.deterministicSet()));
    this.hook = this.model.textEncoder.registerForwardPreHook(() => {
      this.applied!.setMasks(this.ownMasks(this.model.textEncoder.training ? this.sampleSet() : this.deterministicSet()));
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
  private ownMasks(set: TextMaskSet): TextMaskSet {
    const ts = [set.hidden, ...set.layers.flatMap((l) => [l?.heads, l?.ffn])].filter((t): t is tf.Tensor1D => t != null);
    for (const t of ts) tf.keep(t);
    tf.dispose(this.owned);
    this.owned = ts;
    return set;
  }

  private sampleSet(): TextMaskSet {
    const s = (g: HardConcreteGate) => g.sample(this.seed * 1_000_003 + this.draws++ * 7919) as tf.Tensor1D;
    return { hidden: s(this.hidden), layers: this.layers.map((l) => ({ heads: l.heads ? s(l.heads) : undefined, ffn: s(l.ffn) })) };
  }

  private deterministicSet(): TextMaskSet {
    const v = this.deterministic();
    const t = (a: Float32Array | undefined) => (a ? tf.tensor1d(a) : undefined);
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

  /** The prunable size of the model `prune(model, countShift)` gives (the size formulas at the 0/1 indicators of the deterministic masks). */
  prunedSize(countShift = 0): number {
    const v = this.deterministic(countShift);
    return tf.tidy(() => {
      const ind = (a: Float32Array | undefined) => (a ? tf.tensor1d(a.map((x) => (x !== 0 ? 1 : 0))) : undefined);
      const s = this.sizeOf({ hidden: ind(v.hidden), layers: v.layers.map((l) => ({ heads: ind(l?.heads), ffn: ind(l?.ffn) })) });
      return Math.round(s.expected.dataSync()[0]);
    });
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
    for (const l of this.layers) {
      l.heads?.clampLogAlpha();
      l.ffn.clampLogAlpha();
    }
  }

  prune(model: CLIP, countShift = 0): CLIP {
    return pruneText(model, this.deterministic(countShift)).model;
  }

  dispose(): void {
    this.remove();
    this.hidden.dispose();
    for (const l of this.layers) {
      l.heads?.dispose();
      l.ffn.dispose();
    }
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
