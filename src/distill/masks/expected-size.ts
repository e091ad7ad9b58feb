/**
 * Expected kept parameter counts of masked blocks (methods.md §3.4, §3.8), as differentiable tf scalars of
 * the masks' keep probabilities p = P(z ≠ 0) (`keepProbability`). Independent of where the masks multiply
 * the model: each function takes a block's geometry and the keep probabilities of its masks and returns
 * `{ expected, full }` — E[N] and N₀, the count with every mask open (equal to the real count of the
 * counted parameters, see below).
 *
 * Masks: `channels` [C] — the residual/hidden channels (TinyCLIP's hidden mask; in MCi the stage's channel
 * mask, shared by every block of the stage); `heads` [H] — a layer's attention heads; `ffn` [F] — a layer's
 * FFN units (transformer) or ConvFFN hidden channels. A mask left out is always open (p = 1). Gates are
 * independent, so a weight that exists only when two units are kept (a channel and a head, a channel and an
 * FFN unit) is kept with probability p_a·p_b, and Σ_a Σ_b p_a p_b = (Σ p_a)(Σ p_b): every formula below is
 * a polynomial in the three sums S_c = Σ p_c, S_h = Σ p_h, S_f = Σ p_f.
 *
 * Only trainable parameters are counted (BatchNorm running statistics are buffers). Counting conventions,
 * per block (d_h: head width, heads·d_h need not equal C; k_h×k_w: a depthwise kernel):
 *
 * - Transformer layer (`TransformerEncoder`: text `base` / `mct` layers, ViT-B), exact per parameter:
 *   qkv_proj weight 3·d_h per (channel, head) pair and bias 3·d_h per head; out_proj weight d_h per (head,
 *   channel) pair and bias 1 per channel; FFN fc1 weight 1 per (channel, unit) pair and bias 1 per unit; fc2
 *   weight 1 per (unit, channel) pair and bias 1 per channel; the two LayerNorms (γ, β: 4 per channel) only
 *   with `norms: true`. E[N] = 4·d_h·S_c·S_h + 3·d_h·S_h + 2·S_c + 2·S_c·S_f + S_f [+ 4·S_c];
 *   N₀ = 4·C·H·d_h + 3·H·d_h + 2C + 2CF + F [+ 4C]. With d_h = C/H and no norms N₀ is TinyCLIP's
 *   4C² + 4C + 2CF + C + F; E[N] differs from TinyCLIP's (4(C+1)/H)·S_c·S_h + 2·S_c·S_f, which spreads the
 *   attention biases over the (channel, head) pairs and leaves the FFN biases out of E[N] (so its E[N] < N₀
 *   with every mask open). Not modelled: a layer whose heads are all pruned loses out_proj's bias and its
 *   LayerNorm (§3.7 step 3); here they count as long as their channel is kept.
 * - RepMixer token mixer (`RepMixer`), per channel: train form — layer scale 1, `norm` BN 2, `mixer` BN skip 2,
 *   k_h·k_w conv + its BN 2, and for k_h > 1 the 1×1 scale branch 1 + BN 2 (3×3: 19; text 1×11: 18);
 *   fused form (`reparam_conv`) — k_h·k_w + bias 1.
 * - ConvFFN (`ConvFFN`, in = out = C): per channel the depthwise k_h×k_w conv + its BN 2 and fc2's bias 1;
 *   fc1 1 per (channel, unit) pair and bias 1 per unit; fc2 1 per (unit, channel) pair.
 *   E[N] = (k_h·k_w + 3)·S_c + 2·S_c·S_f + S_f.
 * - RepMixerBlock (MCi stages 1–3, the `mct` text blocks): the block's layer scale (1 per channel) + RepMixer +
 *   ConvFFN.
 * - MCi AttentionBlock: per channel BN pre-norm 2, layer scales 2, proj bias 1; qkv (no bias) 3·d_h per
 *   (channel, head) pair; proj d_h per (head, channel) pair; + ConvFFN.
 * - Embedding-like tables (`tableSize`): `rows` entries per channel (token table, positional embedding, the
 *   final projection's rows: whatever the caller decides the target sparsity should count).
 */
import * as tf from '../../base/tf.js';
import { MclipError } from '../../errors.js';
import type { TransformerEncoder } from '../../base/layers/transformer-encoder.js';
import type { RepMixerBlock } from '../../base/layers/repmixer-block.js';
import type { AttentionBlock } from '../../base/layers/attention-block.js';

/** E[N] (differentiable; the caller disposes it) and N₀ (every mask open) of a block or a sum of blocks. */
export interface SizeTerm {
  expected: tf.Scalar;
  full: number;
}

/** Keep probabilities of a block's masks (any shape; only the element count and the sum matter). Absent: always kept. */
export interface KeepProbs {
  /** Residual / hidden / stage channels [C]. */
  channels?: tf.Tensor;
  /** Attention heads [H]. */
  heads?: tf.Tensor;
  /** FFN units / ConvFFN hidden channels [F]. */
  ffn?: tf.Tensor;
}

export interface TransformerLayerGeometry {
  /** Residual width C. */
  dim: number;
  heads: number;
  headDim: number;
  /** FFN width F. */
  ffn: number;
  /** Count the two LayerNorms (γ, β) as well; default false (TinyCLIP's N₀ leaves them out). */
  norms?: boolean;
}

export interface ConvFfnGeometry {
  /** Channels C (in = out). */
  dim: number;
  /** Hidden width F. */
  ffn: number;
  /** Depthwise kernel [k_h, k_w]: [7, 7] (image) or [1, 11] (text). */
  kernel: readonly [number, number];
}

export interface RepMixerGeometry {
  dim: number;
  /** Depthwise kernel [k_h, k_w]: [3, 3] (image) or [1, 11] (text). */
  kernel: readonly [number, number];
  /** The fused form (one biased depthwise `reparam_conv`); default false (the train-time branches). */
  fused?: boolean;
}

export interface RepMixerBlockGeometry {
  dim: number;
  ffn: number;
  /** Token-mixer kernel. */
  kernel: readonly [number, number];
  /** ConvFFN depthwise kernel. */
  ffnKernel: readonly [number, number];
  /** Whether the token mixer is fused. */
  fused?: boolean;
}

export interface AttentionBlockGeometry {
  dim: number;
  heads: number;
  /** Head width (32 in MCi). */
  headDim: number;
  ffn: number;
  /** ConvFFN depthwise kernel (default [7, 7]). */
  ffnKernel?: readonly [number, number];
}

/** Σ p of a mask of `n` units as a scalar (n when the mask is absent), checking its size. */
function maskSum(p: tf.Tensor | undefined, n: number, what: string): tf.Scalar {
  if (!(Number.isInteger(n) && n > 0)) throw new MclipError(`expected size: ${what} count must be a positive integer, got ${n}`);
  if (!p) return tf.scalar(n);
  if (p.size !== n) throw new MclipError(`expected size: ${what} keep probabilities have ${p.size} entries, the block has ${n}`);
  return p.sum() as tf.Scalar;
}

/** a·x + b·y·… : a weighted sum of scalar products, built in one tidy. */
function poly(terms: ReadonlyArray<readonly [number, ...tf.Scalar[]]>): tf.Scalar {
  return tf.tidy(() => tf.addN(terms.map(([c, ...xs]) => xs.reduce<tf.Tensor>((acc, x) => acc.mul(x), tf.scalar(c)))) as tf.Scalar);
}

/** The sum of the parts `build` makes, in a tidy (only the sum's scalar survives). */
function combine(build: () => SizeTerm[]): SizeTerm {
  let full = 0;
  const expected = tf.tidy(() => {
    const sum = sumSizes(build());
    full = sum.full;
    return sum.expected;
  });
  return { expected, full };
}

function kernelTaps(kernel: readonly [number, number]): number {
  const [kh, kw] = kernel;
  if (!(Number.isInteger(kh) && Number.isInteger(kw) && kh > 0 && kw > 0)) throw new MclipError(`expected size: bad kernel [${kh}, ${kw}]`);
  return kh * kw;
}

/** Transformer layer (text `base` / `mct` layers, ViT-B); see the file comment for what is counted. */
export function transformerLayerSize(p: KeepProbs, g: TransformerLayerGeometry): SizeTerm {
  const { dim: c, heads: h, headDim: dh, ffn: f } = g;
  const norms = g.norms ? 4 : 0;
  const expected = tf.tidy(() => {
    const sc = maskSum(p.channels, c, 'channel');
    const sh = maskSum(p.heads, h, 'head');
    const sf = maskSum(p.ffn, f, 'FFN unit');
    return poly([
      [4 * dh, sc, sh],
      [3 * dh, sh],
      [2 + norms, sc],
      [2, sc, sf],
      [1, sf],
    ]);
  });
  return { expected, full: 4 * dh * c * h + 3 * dh * h + (2 + norms) * c + 2 * c * f + f };
}

/** Trainable parameters per channel of a RepMixer token mixer. */
export function repMixerPerChannel(g: Pick<RepMixerGeometry, 'kernel' | 'fused'>): number {
  const taps = kernelTaps(g.kernel);
  if (g.fused) return taps + 1;
  return 1 + 2 + 2 + taps + 2 + (g.kernel[0] > 1 ? 3 : 0);
}

/** RepMixer token mixer (per channel only). */
export function repMixerSize(p: Pick<KeepProbs, 'channels'>, g: RepMixerGeometry): SizeTerm {
  const per = repMixerPerChannel(g);
  const expected = tf.tidy(() => poly([[per, maskSum(p.channels, g.dim, 'channel')]]));
  return { expected, full: per * g.dim };
}

/** ConvFFN (in = out = C): depthwise conv + BN, fc1 C → F, fc2 F → C. */
export function convFfnSize(p: Pick<KeepProbs, 'channels' | 'ffn'>, g: ConvFfnGeometry): SizeTerm {
  const per = kernelTaps(g.kernel) + 2 + 1;
  const expected = tf.tidy(() => {
    const sc = maskSum(p.channels, g.dim, 'channel');
    const sf = maskSum(p.ffn, g.ffn, 'FFN unit');
    return poly([
      [per, sc],
      [2, sc, sf],
      [1, sf],
    ]);
  });
  return { expected, full: per * g.dim + 2 * g.dim * g.ffn + g.ffn };
}

/** RepMixerBlock: layer scale + RepMixer + ConvFFN. */
export function repMixerBlockSize(p: Pick<KeepProbs, 'channels' | 'ffn'>, g: RepMixerBlockGeometry): SizeTerm {
  return combine(() => [
    tableSize(p, { dim: g.dim, rows: 1 }),
    repMixerSize(p, { dim: g.dim, kernel: g.kernel, fused: g.fused }),
    convFfnSize(p, { dim: g.dim, ffn: g.ffn, kernel: g.ffnKernel }),
  ]);
}

/** MCi AttentionBlock: BN pre-norm, MHSA (qkv without bias, biased proj), two layer scales, ConvFFN. */
export function attentionBlockSize(p: KeepProbs, g: AttentionBlockGeometry): SizeTerm {
  const { dim: c, heads: h, headDim: dh } = g;
  return combine(() => {
    const sc = maskSum(p.channels, c, 'channel');
    const sh = maskSum(p.heads, h, 'head');
    const attn = poly([
      [4 * dh, sc, sh],
      [2 + 2 + 1, sc],
    ]);
    return [{ expected: attn, full: 4 * dh * c * h + 5 * c }, convFfnSize(p, { dim: c, ffn: g.ffn, kernel: g.ffnKernel ?? [7, 7] })];
  });
}

/** A table with `rows` entries per channel (token or positional embedding, projection rows, a layer scale). */
export function tableSize(p: Pick<KeepProbs, 'channels'>, g: { dim: number; rows: number }): SizeTerm {
  if (!(Number.isInteger(g.rows) && g.rows >= 0)) throw new MclipError(`expected size: rows must be a non-negative integer, got ${g.rows}`);
  const expected = tf.tidy(() => poly([[g.rows, maskSum(p.channels, g.dim, 'channel')]]));
  return { expected, full: g.rows * g.dim };
}

/** Parameters no mask reaches, counted in N₀ at their full size (e.g. to measure sparsity against a whole tower). */
export function fixedSize(n: number): SizeTerm {
  if (!(Number.isInteger(n) && n >= 0)) throw new MclipError(`expected size: a fixed size must be a non-negative integer, got ${n}`);
  return { expected: tf.scalar(n), full: n };
}

/** The sum of several terms (the layers of a tower; both towers for TinyCLIP's joint sparsity). Does not dispose the parts. */
export function sumSizes(parts: readonly SizeTerm[]): SizeTerm {
  const expected = tf.tidy(() => (parts.length === 0 ? tf.scalar(0) : (tf.addN(parts.map((x) => x.expected)) as tf.Scalar)));
  return { expected, full: parts.reduce((s, x) => s + x.full, 0) };
}

/**
 * Expected sparsity ŝ = 1 − ΣE[N]/ΣN₀ of one term or of several (one tower's layers, or both towers'
 * sums for the joint sparsity of `--total-loss-flag`). Does not dispose its inputs.
 */
export function expectedSparsity(terms: SizeTerm | readonly SizeTerm[]): tf.Scalar {
  const list: readonly SizeTerm[] = 'expected' in terms ? [terms] : terms;
  const full = list.reduce((s, x) => s + x.full, 0);
  if (!(full > 0)) throw new MclipError('expectedSparsity: the full size N₀ is 0');
  return tf.tidy(() => tf.sub(1, tf.addN(list.map((x) => x.expected)).div(full)) as tf.Scalar);
}

/** The geometry of a `TransformerEncoder`. */
export function transformerLayerGeometry(layer: TransformerEncoder, norms = false): TransformerLayerGeometry {
  const a = layer.attn;
  return { dim: a.embedDim, heads: a.numHeads, headDim: a.headDim, ffn: layer.ffnDim, norms };
}

/** The geometry of a `RepMixerBlock` (train-time or fused token mixer). */
export function repMixerBlockGeometry(block: RepMixerBlock): RepMixerBlockGeometry {
  const m = block.tokenMixer;
  const f = block.convffn;
  return { dim: m.dim, ffn: f.hidden, kernel: m.kernel, ffnKernel: f.conv.conv.kernel, fused: m.reparamConv !== null };
}

/** The geometry of an MCi `AttentionBlock`. */
export function attentionBlockGeometry(block: AttentionBlock): AttentionBlockGeometry {
  const a = block.tokenMixer;
  const f = block.convffn;
  return { dim: a.dim, heads: a.numHeads, headDim: a.headDim, ffn: f.hidden, ffnKernel: f.conv.conv.kernel };
}
