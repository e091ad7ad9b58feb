/**
 * The machinery the tower gates (`TextGates`, `ViTGates`, `ImageGates`) share: putting a mask set on the model
 * through the tower's `apply…Masks` and a pre-forward hook on the tower that draws one at every forward (one
 * sample per forward in train mode, seeded from the gates' seed and a draw counter; the deterministic masks in
 * eval mode), keeping the drawn masks alive until the next draw, taking them off again, and the per-gate
 * bookkeeping (ln α variables, clamping, disposal), the pruned size at the deterministic masks' indicators and
 * ŝ. Each tower says which gates it has (in ln α order), how a mask set is built and owned, and its size formulas.
 */
import * as tf from '../../base/tf.js';
import { MclipError } from '../../errors.js';
import type { CLIP } from '../../base/model/clip.js';
import type { HookHandle } from '../../base/nn/module.js';
import type { SizeTerm } from './expected-size.js';
import type { HardConcreteGate } from './hard-concrete.js';
import type { Tower, TowerGates } from './tower-gates.js';

/** What `apply…Masks` returns: the installed masks, to swap and to take off. */
export interface AppliedMasks<Set> {
  setMasks(set: Set): void;
  remove(): void;
}

/** The 0/1 indicator tensor of deterministic mask values (undefined where absent). */
export type Indicator = (a: Float32Array | undefined) => tf.Tensor1D | undefined;

const indicator: Indicator = (a) => (a ? tf.tensor1d(a.map((x) => (x !== 0 ? 1 : 0))) : undefined);

/** Deterministic mask values as a tensor (undefined where absent). */
export const maskTensor = (a: Float32Array | undefined): tf.Tensor1D | undefined => (a ? tf.tensor1d(a) : undefined);

/** The options every tower's gates take. */
export interface GateOptions {
  /** Seed of the mask samples (each forward's seed is derived from it and a counter). */
  seed?: number;
  /** Name prefix of the ln α variables (tf variable names are global). */
  name?: string;
  /** Initial ln α of every gate (default 10, TinyCLIP's; clamped to ln 100 after the first step). */
  initLogAlpha?: number;
}

/** A tower's gates: `Set` its mask set (tensors), `Values` its deterministic mask values. */
export abstract class GateSet<Set, Values> implements TowerGates {
  abstract readonly tower: Tower;
  private applied: AppliedMasks<Set> | null = null;
  private hook: HookHandle | null = null;
  private owned: tf.Tensor[] = [];
  private draws = 0;

  /** `label`: the gates' name in errors ('text gates', …). */
  protected constructor(
    protected readonly model: CLIP,
    private readonly seed: number,
    private readonly label: string,
  ) {}

  /** Every gate, in the order of `logAlphas`. */
  protected abstract gates(): HardConcreteGate[];
  /** Puts mask set `set` on the model (the tower's `apply…Masks`). */
  protected abstract applyMasks(set: Set): AppliedMasks<Set>;
  /** The tensors of `set` the hooks read (absent ones left out). */
  protected abstract maskTensors(set: Set): Array<tf.Tensor | null | undefined>;
  /** One sample of every gate, each drawn with `draw` in the gates' order; `extra`: further tensors to keep with it. */
  protected abstract sampleSet(): { set: Set; extra?: tf.Tensor[] };
  /** The deterministic masks as a mask set. */
  protected abstract deterministicSet(): Set;
  /** The size formulas at the indicators (`ind`) of deterministic masks `v`. */
  protected abstract indicatorSize(v: Values, ind: Indicator): SizeTerm;
  /** The deterministic masks (§3.7 step 1), for pruning; `countShift`: see `deterministicMask`. */
  abstract deterministic(countShift?: number): Values;
  abstract expectedSize(): SizeTerm;
  abstract prune(model: CLIP, countShift?: number): CLIP;

  /** The gated tower of the model. */
  private encoder(): CLIP['textEncoder'] | CLIP['imageEncoder'] {
    return this.tower === 'text' ? this.model.textEncoder : this.model.imageEncoder;
  }

  /** Every ln α variable (the `masks` parameter group). */
  get logAlphas(): tf.Variable[] {
    return this.gates().map((g) => g.logAlpha);
  }

  /** Installs the masks on the model (build the optimiser afterwards: modules are replaced). */
  install(): void {
    if (this.applied) throw new MclipError(`${this.label}: already installed`);
    this.applied = this.applyMasks(this.ownMasks(this.deterministicSet()));
    this.hook = this.encoder().registerForwardPreHook(() => {
      if (this.encoder().training) {
        const { set, extra } = this.sampleSet();
        this.applied!.setMasks(this.ownMasks(set, extra));
      } else {
        this.applied!.setMasks(this.ownMasks(this.deterministicSet()));
      }
    });
  }

  /** Takes the masks off the model (plain modules again; rebuild any optimiser). */
  remove(): void {
    this.hook?.remove();
    this.hook = null;
    this.applied?.remove();
    this.applied = null;
    tf.dispose(this.owned);
    this.owned = [];
  }

  /** Keeps the masks the hooks read (and `extra`, tensors they were built from) until the next draw, frees the previous ones. */
  private ownMasks(set: Set, extra: tf.Tensor[] = []): Set {
    const ts = [...this.maskTensors(set).filter((t): t is tf.Tensor => t != null), ...extra];
    for (const t of ts) tf.keep(t);
    tf.dispose(this.owned);
    this.owned = ts;
    return set;
  }

  /** One sample of gate `g`, seeded from the gates' seed and the draw counter. */
  protected draw(g: HardConcreteGate): tf.Tensor1D {
    return g.sample(this.seed * 1_000_003 + this.draws++ * 7919) as tf.Tensor1D;
  }

  /** The prunable size of the model `prune(model, countShift)` gives (the size formulas at the 0/1 indicators of the deterministic masks). */
  prunedSize(countShift = 0): number {
    const v = this.deterministic(countShift);
    return tf.tidy(() => {
      const s = this.indicatorSize(v, indicator);
      return Math.round(s.expected.dataSync()[0]);
    });
  }

  /** ŝ = 1 − E[N]/N₀ of the tower. */
  expectedSparsity(): tf.Scalar {
    return tf.tidy(() => {
      const s = this.expectedSize();
      return tf.scalar(1).sub(s.expected.div(s.full)) as tf.Scalar;
    });
  }

  /** Clamps every ln α (after each optimiser step). */
  clamp(): void {
    for (const g of this.gates()) g.clampLogAlpha();
  }

  dispose(): void {
    this.remove();
    for (const g of this.gates()) g.dispose();
  }
}
