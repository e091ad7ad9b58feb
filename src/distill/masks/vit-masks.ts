/**
 * TinyCLIP's structured masks on a CLIP's ViT image tower (MobileCLIP-B; methods.md §3.3, §3.7), put on the
 * model through the core's seams only (forward hooks, the `attn_probs` site, `Module.replace`): the base model
 * knows nothing of masks, and `remove()` gives back a model whose outputs are bit-identical to before. This is
 * TinyCLIP's own setting (its image tower is a ViT), and the text side's `base` layers (`text-masks.ts`) again:
 * the ViT's blocks are the same `TransformerEncoder`s.
 *
 * One mask set per forward, shared by the batch (`ViTMaskSet`): a hidden mask z^emb [d] shared by the whole
 * residual stream (every block reads and writes the same width d = `embedDim`), and per block
 * (`image_encoder.model.transformer.<i>`) a head mask z^head [H_i] and an intermediate mask z^int [F_i]. Values
 * in [0, 1]: 0 = pruned, fractional = kept at that soft value. Where they multiply:
 *
 * - z^head: head h's attention weights × z^head_h at `pre_norm_mha.1.attn_probs`; the attention output P·V is
 *   linear in P (softmax and sigmoid kernels alike), so this scales head h's output before `out_proj`.
 * - z^int: the GELU activations (input of `pre_norm_ffn.4`).
 * - z^emb, the stream's origin: the input of `transformer` (the CLS row and the patch tokens with their
 *   positions, concatenated inside `VisionTransformer.forward`, where no module boundary sits) × z, by a
 *   pre-forward hook on the block list. So the stream starts as z ⊙ (…), as the text side's embeddings.
 * - z^emb, the residual writes: the attention branch (`pre_norm_mha`'s output) and the FFN branch
 *   (`pre_norm_ffn`'s output) × z; every LayerNorm (`pre_norm_mha.0`, `pre_norm_ffn.0` of every block and
 *   `post_transformer_norm`) becomes a `MaskedLayerNorm` (statistics over the kept channels, pruned channels
 *   output 0). So the residual stream is z ⊙ (…), zero on pruned channels, and equals the pruned model's
 *   stream on the kept ones; the final LayerNorm outputs 0 on pruned channels, so the CLS row reaches the
 *   projection through the kept channels only (the pruned model drops the projection's other rows).
 *
 * The conv stem's internal channels are not masked (its output, the patch tokens, is the stream and is
 * masked with it); the pruned model keeps the stem's width (`prune-vit.ts`).
 *
 * Masks change every step (a new hard-concrete sample): the hooks read the tensors of the current set at every
 * forward, and `setMasks` swaps the set (same layout). The mask tensors are the caller's — not copied, not
 * disposed here — and must stay alive while forwards use them; variables (or tensors built under the tape from
 * gate parameters) receive gradients through every site above.
 *
 * Caveat (as on the text side, a seam the core lacks): `Module.replace` disposes the module it replaces, so the
 * original LayerNorm objects cannot come back. The masked LayerNorms start from copies of their γ, β and
 * `remove()` puts back fresh LayerNorms holding the current values: outputs are exactly restored, but the
 * LayerNorm *variables* are new objects both after `applyViTMasks` and after `remove()` — an optimiser that
 * holds model variables must be built after applying the masks (and rebuilt after removing them). Without a
 * hidden mask nothing is replaced. With an all-ones hidden mask the masked LayerNorm computes the same values
 * with its own ops (the plain LayerNorm may use a fused kernel), so outputs agree to float rounding, not bit
 * for bit; head and FFN masks of ones change nothing at all.
 */
import * as tf from '../../base/tf.js';
import { MclipError } from '../../errors.js';
import type { CLIP } from '../../base/model/clip.js';
import { VisionTransformer } from '../../base/model/vit.js';
import { LayerNorm } from '../../base/layers/layer-norm.js';
import { TransformerEncoder } from '../../base/layers/transformer-encoder.js';
import { MaskedLayerNorm } from './masked-layer-norm.js';
import { AppliedMasks } from './mask-hooks.js';

/** The masks of one ViT block. */
export interface ViTBlockMasks<T> {
  heads?: T;
  ffn?: T;
}

/** A ViT image tower's masks: `blocks[i]` for `image_encoder.model.transformer.<i>` (null: no block mask there). */
export interface ViTMasks<T> {
  hidden?: T;
  blocks: ReadonlyArray<ViTBlockMasks<T> | null>;
}

/** Masks as tensors, for the masked model (`applyViTMasks`). */
export type ViTMaskSet = ViTMasks<tf.Tensor1D>;

/** Masks as values, for pruning (`pruneViT`): the deterministic masks of methods.md §3.7 step 1. */
export type ViTMaskValues = ViTMasks<Float32Array>;

/** What one ViT block can be masked on. */
export interface ViTBlockMaskSizes {
  heads: number;
  /** FFN units. */
  ffn: number;
}

/** The length every mask of a ViT image tower must have. */
export interface ViTMaskSizes {
  /** Residual-stream width (`embedDim`). */
  hidden: number;
  blocks: ViTBlockMaskSizes[];
}

const IMG = 'image_encoder.model.';

/** `model`'s image tower as a ViT; throws (one line) when it is another kind. */
export function vitTower(model: CLIP): VisionTransformer {
  const m = model.imageEncoder.model;
  if (!(m instanceof VisionTransformer)) throw new MclipError(`ViT masks: the image tower is a ${m.constructor.name}; ViT masks apply to ViT image towers (MCi: image-masks.ts)`);
  return m;
}

/** The transformer blocks of `model`'s ViT, checked. */
export function vitBlocksOf(model: CLIP): TransformerEncoder[] {
  return vitTower(model)
    .transformer.modules()
    .map((m, i) => {
      if (!(m instanceof TransformerEncoder)) throw new MclipError(`ViT masks: ${IMG}transformer.${i} is a ${m.constructor.name}, expected a TransformerEncoder`);
      return m;
    });
}

/** The mask sizes of `model`'s ViT image tower, read off its modules. */
export function vitMaskSizes(model: CLIP): ViTMaskSizes {
  const blocks = vitBlocksOf(model).map((b): ViTBlockMaskSizes => ({ heads: b.attn.numHeads, ffn: b.ffnDim }));
  return { hidden: vitTower(model).postTransformerNorm.dim, blocks };
}

/**
 * Checks that `masks` fit `sizes` (`length` gives a mask's length: a tensor's or an array's); throws naming
 * the first mask that does not.
 */
export function checkViTMasks<T>(masks: ViTMasks<T>, sizes: ViTMaskSizes, length: (m: T) => number, what = 'ViT masks'): void {
  const fit = (m: T | undefined, n: number, name: string): void => {
    if (m === undefined) return;
    const got = length(m);
    if (got !== n) throw new MclipError(`${what}: ${name} has ${got} entries, expected ${n}`);
  };
  fit(masks.hidden, sizes.hidden, 'hidden');
  if (masks.blocks.length !== sizes.blocks.length) {
    throw new MclipError(`${what}: ${masks.blocks.length} block entries for a ViT of ${sizes.blocks.length} blocks (use null for an unmasked block)`);
  }
  masks.blocks.forEach((b, i) => {
    if (!b) return;
    fit(b.heads, sizes.blocks[i].heads, `blocks[${i}].heads`);
    fit(b.ffn, sizes.blocks[i].ffn, `blocks[${i}].ffn`);
  });
}

/** Which masks a set holds ('h' hidden, per block 'H' heads and 'F' ffn): two sets with one layout agree. */
function layout<T>(m: ViTMasks<T>): string {
  return [m.hidden ? 'h' : '-', ...m.blocks.map((b) => `${b?.heads ? 'H' : '-'}${b?.ffn ? 'F' : '-'}`)].join('|');
}

function tensorLength(t: tf.Tensor1D): number {
  if (t.rank !== 1) throw new MclipError(`ViT masks: a mask of shape [${t.shape}], expected rank 1`);
  return t.shape[0];
}

/** The values of a mask set (copies), e.g. to prune with the masks a model was trained under. */
export function vitMaskValues(masks: ViTMaskSet): ViTMaskValues {
  const v = (t: tf.Tensor1D | undefined): Float32Array | undefined => (t ? Float32Array.from(t.dataSync() as Float32Array) : undefined);
  return {
    hidden: v(masks.hidden),
    blocks: masks.blocks.map((b) => (b ? { heads: v(b.heads), ffn: v(b.ffn) } : null)),
  };
}

/** The masks on a model, from `applyViTMasks`. */
export interface AppliedViTMasks {
  /** The mask set the hooks read now. */
  readonly masks: ViTMaskSet;
  /** Makes the hooks read `masks` from the next forward on; same layout (which masks are present) as applied. */
  setMasks(masks: ViTMaskSet): void;
  /** Takes every hook off and puts plain LayerNorms back (idempotent). */
  remove(): void;
}

/**
 * Puts `masks` on `model`'s ViT image tower (see the file comment for where each multiplies). The layout —
 * which masks exist — is fixed here; their values may change with `setMasks`. Build any optimiser over the
 * model's variables after this call (the LayerNorms are replaced when there is a hidden mask). Throws when the
 * image tower is not a ViT.
 */
export function applyViTMasks(model: CLIP, masks: ViTMaskSet): AppliedViTMasks {
  const sizes = vitMaskSizes(model);
  const applied = new AppliedMasks<ViTMaskSet>('ViT masks', masks, (m) => checkViTMasks(m, sizes, tensorLength), layout, model, IMG);
  const current = (): ViTMaskSet => applied.masks;

  const hidden = (): tf.Tensor1D => need(current().hidden, 'hidden');
  const block = (i: number, k: 'heads' | 'ffn'): tf.Tensor1D => need(current().blocks[i]?.[k], `blocks[${i}].${k}`);
  /** x ⊙ z over the last (channel) axis. */
  const scale = (x: tf.Tensor, z: tf.Tensor1D): tf.Tensor => x.mul(z);
  const post = (path: string, fn: (x: tf.Tensor, y: tf.Tensor) => tf.Tensor): void => applied.post(path, fn);
  const pre = (path: string, fn: (x: tf.Tensor) => tf.Tensor): void => applied.pre(path, fn);
  const maskNorm = (path: string): void => {
    const full = `${IMG}${path}`;
    const old = model.get(full);
    if (!(old instanceof LayerNorm)) throw new MclipError(`ViT masks: ${full} is a ${old.constructor.name}, expected a LayerNorm`);
    const ln = model.replace(full, MaskedLayerNorm.from(old, () => current().hidden ?? null));
    // Put a plain LayerNorm back unless something else has replaced ours since.
    applied.onRemove(() => {
      if (model.get(full) === ln) model.replace(full, ln.toLayerNorm());
    });
  };

  try {
    if (masks.hidden) {
      pre('transformer', (x) => scale(x, hidden()));
      maskNorm('post_transformer_norm');
    }
    sizes.blocks.forEach((_s, i) => {
      const at = `transformer.${i}.`;
      const b = masks.blocks[i];
      if (b?.heads) post(`${at}pre_norm_mha.1.attn_probs`, (_x, p) => p.mul(block(i, 'heads').reshape([1, -1, 1, 1])));
      if (b?.ffn) pre(`${at}pre_norm_ffn.4`, (x) => scale(x, block(i, 'ffn')));
      if (masks.hidden) {
        post(`${at}pre_norm_mha`, (_x, y) => scale(y, hidden()));
        post(`${at}pre_norm_ffn`, (_x, y) => scale(y, hidden()));
        maskNorm(`${at}pre_norm_mha.0`);
        maskNorm(`${at}pre_norm_ffn.0`);
      }
    });
  } catch (e) {
    applied.remove();
    throw e;
  }
  return applied;
}

function need(t: tf.Tensor1D | undefined, name: string): tf.Tensor1D {
  if (!t) throw new Error(`internal: ViT mask ${name} is missing from the current set`);
  return t;
}
