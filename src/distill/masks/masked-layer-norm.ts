/**
 * TinyCLIP's masked LayerNorm (methods.md §3.3, CoFi's `CoFiLayerNorm`): under a hidden (embedding) mask z,
 * the mean and variance run over the channels whose mask is non-zero only, and pruned channels output 0:
 *
 *   k = 1[z ≠ 0],  K = Σ k,  μ = Σ_c k_c x_c / K,  σ² = Σ_c k_c (x_c − μ)² / K
 *   y = k ⊙ ((x − μ) / √(σ² + ε) ⊙ γ + β)
 *
 * which is, on the kept channels, exactly the LayerNorm of the physically pruned model (γ, β sliced;
 * methods.md §3.7). Only *where* z is zero matters here (the indicator carries no gradient); the soft values
 * scale the residual stream elsewhere.
 *
 * A subclass of LayerNorm with the same parameters (`weight`, `bias`, same state-dict keys and noDecay), so
 * it goes into a model through `Module.replace` and whatever reads a LayerNorm (typed accessors, the export
 * and cost registries) still finds one. The mask is read through a callback at every forward, so the caller
 * may swap it (a new hard-concrete sample per step) without touching the module; with no mask (null) it is
 * the plain LayerNorm.
 */
import * as tf from '../../base/tf.js';
import { LayerNorm } from '../../base/layers/layer-norm.js';

/** The current mask [C] (any values; non-zero = kept), or null for none. Not owned by the LayerNorm. */
export type ChannelMaskSource = () => tf.Tensor1D | null;

/** The `weight` and `bias` variables of a LayerNorm, through its public parameter list. */
function affine(ln: LayerNorm): { weight: tf.Variable; bias: tf.Variable } {
  const p = new Map(ln.namedParams());
  const weight = p.get('weight')?.variable;
  const bias = p.get('bias')?.variable;
  if (!weight || !bias) throw new Error(`LayerNorm without weight/bias (has ${[...p.keys()].join(', ') || 'nothing'})`);
  return { weight, bias };
}

/** Copies `from`'s affine values into `to` (same width). */
function copyAffine(from: LayerNorm, to: LayerNorm): void {
  const a = affine(from);
  const b = affine(to);
  b.weight.assign(a.weight);
  b.bias.assign(a.bias);
}

export class MaskedLayerNorm extends LayerNorm {
  private readonly mask: ChannelMaskSource;

  constructor(dim: number, mask: ChannelMaskSource, eps = 1e-5) {
    super(dim, eps);
    this.mask = mask;
  }

  /** A masked LayerNorm with `ln`'s width, eps and a copy of its current γ and β. */
  static from(ln: LayerNorm, mask: ChannelMaskSource): MaskedLayerNorm {
    const m = new MaskedLayerNorm(ln.dim, mask, ln.eps);
    copyAffine(ln, m);
    return m;
  }

  /** A plain LayerNorm with this one's width, eps and a copy of its current γ and β (to put back). */
  toLayerNorm(): LayerNorm {
    const ln = new LayerNorm(this.dim, this.eps);
    copyAffine(this, ln);
    return ln;
  }

  override forward(x: tf.Tensor): tf.Tensor {
    const z = this.mask();
    if (z == null) return super.forward(x);
    if (z.rank !== 1 || z.shape[0] !== this.dim) throw new Error(`MaskedLayerNorm: mask of shape [${z.shape}] for width ${this.dim}`);
    const weight = this.param('weight');
    const bias = this.param('bias');
    return tf.tidy(() => {
      // sign(|z|): the 0/1 indicator, with a (zero) gradient defined, so it may sit under a tape.
      const keep = tf.sign(tf.abs(z));
      const count = keep.sum();
      const axis = x.rank - 1;
      const mean = x.mul(keep).sum(axis, true).div(count);
      const xc = x.sub(mean).mul(keep);
      const variance = xc.square().sum(axis, true).div(count);
      return xc.mul(tf.rsqrt(variance.add(this.eps))).mul(weight).add(bias.mul(keep));
    });
  }
}
