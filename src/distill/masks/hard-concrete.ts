/**
 * TinyCLIP's hard-concrete (L0) gates (methods.md §3.3, §3.7 step 1; `l0module.py`, after CoFi / Louizos
 * et al.): one learnable logit ln α per maskable unit (a head, an FFN unit, a hidden channel), a stretched
 * and clamped binary-concrete sample z ∈ [0, 1] in training, and a deterministic mask when the masked model
 * is made physically smaller. Independent of where the masks multiply the model.
 *
 * Constants as in the code: γ = −0.1, ζ = 1.1, temperature β = 2/3, ε = 1e-6; ln α starts at 10 (gates
 * open) and is clamped to [ln 0.01, ln 100] after every optimiser step.
 */
import * as tf from '../../base/tf.js';
import { MclipError } from '../../errors.js';
import { mulberry32, type Rng } from '../../base/random.js';

/** Lower end of the stretched interval (γ). */
export const HC_GAMMA = -0.1;
/** Upper end of the stretched interval (ζ). */
export const HC_ZETA = 1.1;
/** Temperature of the binary concrete (β). */
export const HC_BETA = 2 / 3;
/** u is drawn from U(ε, 1 − ε). */
export const HC_EPS = 1e-6;
/** Initial ln α (P(z ≠ 0) ≈ 1 − 1e-5: masks fully open). */
export const HC_INIT_LOG_ALPHA = 10;
/** Clamp range of ln α: [ln 0.01, ln 100]. */
export const HC_LOG_ALPHA_MIN = Math.log(0.01);
export const HC_LOG_ALPHA_MAX = Math.log(100);
/** `deterministic()` scales ln α/β by this before the sigmoid (TinyCLIP's / CoFi's `magical_number`). */
export const HC_DETERMINISTIC_SCALE = 0.8;

/** −β·ln(−γ/ζ) = (2/3)·ln 11 ≈ 1.599: P(z ≠ 0) = σ(ln α + this). */
const KEEP_SHIFT = -HC_BETA * Math.log(-HC_GAMMA / HC_ZETA);

const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));

/**
 * A hard-concrete sample z = clamp(s̄·(ζ − γ) + γ, 0, 1) with s̄ = σ((ln u − ln(1 − u) + ln α)/β), for given
 * uniforms `u` (same shape as `logAlpha`, values in (0, 1)). Differentiable with respect to `logAlpha`
 * (the gradient is 0 where the clamp is active).
 */
export function hardConcreteFromUniform(logAlpha: tf.Tensor, u: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const noise = tf.log(u).sub(tf.log(tf.sub(1, u)));
    const s = tf.sigmoid(noise.add(logAlpha).div(HC_BETA));
    return tf.clipByValue(s.mul(HC_ZETA - HC_GAMMA).add(HC_GAMMA), 0, 1);
  });
}

/** P(z ≠ 0) = σ(ln α − β·ln(−γ/ζ)) = σ(ln α + (2/3)·ln 11), elementwise; differentiable. */
export function keepProbability(logAlpha: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.sigmoid(logAlpha.add(KEEP_SHIFT)));
}

/** P(z ≠ 0) of one ln α, in float64. */
export function keepProbabilityOf(logAlpha: number): number {
  return sigmoid(logAlpha + KEEP_SHIFT);
}

/**
 * The deterministic mask of methods.md §3.7 step 1 (TinyCLIP's `_deterministic_z`), computed in float64 from
 * the values of ln α, per group of `groupSize` consecutive entries (a row of the last axis: one layer's heads
 * or FFN units, or the whole hidden mask): soft = σ(0.8·ln α/β); n_zero = round(n − Σ P(z ≠ 0)) over the group;
 * the n_zero smallest soft entries become 0 (ties: the lower index first), the others keep their fractional
 * soft value. `round` is Math.round (halves up; Python's `round` would round halves to even).
 *
 * `countShift` (default 0, TinyCLIP's mask) adds a common offset to ln α when counting n_zero only — the
 * soft values of the kept entries stay σ(0.8·ln α/β): a stage uses it to land the pruned size on its target
 * (`calibrateShift`, prune-stage.ts). Which entries are zeroed is the same order either way.
 */
export function deterministicMask(logAlpha: ArrayLike<number>, groupSize: number = logAlpha.length, countShift = 0): Float32Array {
  const n = logAlpha.length;
  if (!(Number.isInteger(groupSize) && groupSize > 0 && n % groupSize === 0)) {
    throw new MclipError(`deterministicMask: ${n} values do not split into groups of ${groupSize}`);
  }
  const out = new Float32Array(n);
  for (let g0 = 0; g0 < n; g0 += groupSize) {
    let kept = 0;
    const soft: number[] = [];
    for (let i = 0; i < groupSize; i++) {
      const la = logAlpha[g0 + i];
      kept += keepProbabilityOf(la + countShift);
      soft.push(sigmoid((HC_DETERMINISTIC_SCALE * la) / HC_BETA));
    }
    const nZero = Math.min(groupSize, Math.max(0, Math.round(groupSize - kept)));
    const order = soft.map((_, i) => i).sort((a, b) => soft[a] - soft[b] || a - b);
    const zero = new Set(order.slice(0, nZero));
    for (let i = 0; i < groupSize; i++) out[g0 + i] = zero.has(i) ? 0 : soft[i];
  }
  return out;
}

export interface HardConcreteOptions {
  /** Initial ln α of every gate (default 10). */
  initLogAlpha?: number;
  /** Name of the ln α variable (tf variable names are global: give each gate its own). */
  name?: string;
  /** Seed of the generator that picks a sampling seed when `sample()` gets none (default 0). */
  seed?: number;
}

/**
 * One set of hard-concrete gates of a given shape ([H] heads of one layer, [L, H], [F] FFN units,
 * [d] hidden channels): the learnable `logAlpha` variable and its sample, keep probability and
 * deterministic mask. Owns `logAlpha` (`dispose()` frees it).
 */
export class HardConcreteGate {
  readonly logAlpha: tf.Variable;
  private readonly rng: Rng;

  constructor(shape: number | readonly number[], opts: HardConcreteOptions = {}) {
    const s = typeof shape === 'number' ? [shape] : shape.slice();
    if (s.length === 0 || !s.every((d) => Number.isInteger(d) && d > 0)) throw new MclipError(`HardConcreteGate: bad shape [${s.join(', ')}]`);
    const init = opts.initLogAlpha ?? HC_INIT_LOG_ALPHA;
    if (!Number.isFinite(init)) throw new MclipError(`HardConcreteGate: initial ln α must be finite, got ${init}`);
    this.logAlpha = tf.tidy(() => tf.variable(tf.fill(s, init), true, opts.name));
    this.rng = mulberry32(opts.seed ?? 0);
  }

  get shape(): number[] {
    return this.logAlpha.shape.slice();
  }

  /** Number of gates. */
  get size(): number {
    return this.logAlpha.size;
  }

  /** Clamps ln α to [ln 0.01, ln 100] in place; call after every optimiser step. */
  clampLogAlpha(): void {
    tf.tidy(() => this.logAlpha.assign(tf.clipByValue(this.logAlpha, HC_LOG_ALPHA_MIN, HC_LOG_ALPHA_MAX)));
  }

  /**
   * One training sample z (shape of `logAlpha`, values in [0, 1]), differentiable with respect to ln α.
   * Sample once per step and share it across the batch. u ~ U(ε, 1 − ε) comes from `tf.randomUniform`
   * seeded with `seed`; without one, the seed is drawn from the gate's own generator (reproducible from
   * `HardConcreteOptions.seed`, but not across a resume: pass a seed derived from the step for that).
   */
  sample(seed?: number): tf.Tensor {
    const s = seed ?? Math.floor(this.rng() * 4294967296);
    return tf.tidy(() => hardConcreteFromUniform(this.logAlpha, tf.randomUniform(this.logAlpha.shape, HC_EPS, 1 - HC_EPS, 'float32', s)));
  }

  /** P(z ≠ 0) per gate, differentiable with respect to ln α. */
  keepProbability(): tf.Tensor {
    return keepProbability(this.logAlpha);
  }

  /** Σ P(z ≠ 0): the expected number of open gates (a differentiable scalar). */
  expectedOpen(): tf.Scalar {
    return tf.tidy(() => keepProbability(this.logAlpha).sum() as tf.Scalar);
  }

  /**
   * The deterministic mask (methods.md §3.7 step 1; see `deterministicMask`), row-major in the shape of
   * `logAlpha`, computed per row of the last axis: a [L, H] gate is L groups, as TinyCLIP's per-layer head
   * and FFN masks; a [d] gate is one group. No gradient. `countShift`: see `deterministicMask`.
   */
  deterministic(countShift = 0): Float32Array {
    const shape = this.logAlpha.shape;
    return deterministicMask(this.logAlpha.dataSync(), shape[shape.length - 1], countShift);
  }

  dispose(): void {
    this.logAlpha.dispose();
  }
}
