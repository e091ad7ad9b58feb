/**
 * TinyCLIP's structured masks on a CLIP's MCi image tower (methods.md §3.3, §3.8), put on the model through the
 * core's seams only (forward hooks and the `attn_probs` site): the base model knows nothing of masks, no module
 * is replaced, and `remove()` gives back a model whose outputs are bit-identical to before. Both forms, the
 * train-time (unfused) tower and the reparameterised one, take the same hooks.
 *
 * One mask set per forward, shared by the batch (`ImageMaskSet`): per stage s (`mciStages` order) a channel mask
 * z^s [C_s] on the stage's residual stream, shared by every block of the stage, and per block j
 * (`network.<n>.<j>`) a ConvFFN hidden mask z^int [F] and, in attention blocks, a head mask z^head [H]. Values
 * in [0, 1]: 0 = pruned, fractional = kept at that soft value. Where they multiply (z = z^s, 1[z] = z ≠ 0):
 *
 * - z^head: head h's attention weights × z^head_h at `token_mixer.attn_probs`; the attention output P·V is
 *   linear in P, so this scales head h's output before `proj`.
 * - z^int: the GELU activations, i.e. the input of `convffn.fc2`.
 * - z^s, the stream's origin: the output of the module that produces it — the stem (`patch_embed`) for stage 0,
 *   else the PatchEmbed feeding the stage — times z. So the stream starts as z ⊙ o(x).
 * - z^s, the residual writes: the RepMixer update x ↦ x + z ⊙ (token_mixer(x) − x) (fused or not), the RepCPE
 *   update likewise, the attention branch (`token_mixer`'s output, before γ₁) and every ConvFFN's output
 *   (before the block's layer scale) times z. The stream stays z ⊙ ŝ, ŝ the pruned model's stream.
 * - z^s, the readers whose per-channel shift would make a pruned channel non-zero output 0 on pruned channels
 *   (an indicator 1[z], in train and eval mode alike, as the text side's ConvFFN): every ConvFFN's depthwise
 *   conv + BN (`convffn.conv`) and every attention block's pre-norm BatchNorm (`norm`).
 * - Couplings (methods.md §3.8), with indicators: the stem's internal channels are stage 0's (the stem's
 *   depthwise `patch_embed.1` outputs 0 where 1[z⁰] = 0, so the dense 1×1 `patch_embed.2` reads nothing from
 *   them); a PatchEmbed's grouped large-kernel conv (`proj.0`, output o reads input ⌊o/m⌋, m = C_{s+1}/C_s,
 *   2 in MCi) outputs 0 on o unless both its input channel of stage s and channel o of stage s+1 are kept —
 *   applied before its SE when there is one (`proj.0.se`'s input), so the SE's pooled statistics see the
 *   pruned model's channels only; `conv_exp` (output o reads last-stage input ⌊o/m⌋) likewise, before its SE.
 *
 * Why this is the pruned model exactly (`prune-image.ts`): with s_0 = z ⊙ o(x) and s_{k+1} = s_k + z ⊙ u_k(s_k),
 * s_k = z ⊙ ŝ_k where ŝ_0 = o(x), ŝ_{k+1} = ŝ_k + u_k(z ⊙ ŝ_k): the pruned model keeps every writer as it is
 * and folds z into the input side of every reader of the stream, all of them per-channel (depthwise convs, BNs)
 * or 1×1 convs and linears (fc1, qkv) — exact in eval mode (a BN reading z ⊙ x is a BN with γ·z and μ/z).
 *
 * Masks change every step (a new hard-concrete sample): the hooks read the tensors of the current set at every
 * forward, and `setMasks` swaps the set (same layout). The mask tensors are the caller's — not copied, not
 * disposed here — and must stay alive while forwards use them; variables (or tensors built under the tape from
 * gate parameters) receive gradients through every fractional site above (the indicators pass none).
 */
import * as tf from '../../base/tf.js';
import { MclipError } from '../../errors.js';
import type { CLIP } from '../../base/model/clip.js';
import { FastViT } from '../../base/model/mci.js';
import type { Module } from '../../base/nn/module.js';
import { Sequential } from '../../base/nn/module.js';
import { AttentionBlock } from '../../base/layers/attention-block.js';
import { PatchEmbed } from '../../base/layers/patch-embed.js';
import { RepCPE } from '../../base/layers/rep-cpe.js';
import { RepMixerBlock } from '../../base/layers/repmixer-block.js';
import { ReparamLargeKernelConv } from '../../base/layers/reparam-large-kernel-conv.js';
import { AppliedMasks } from './mask-hooks.js';

/** The masks of one MCi block (`heads`: attention blocks only). */
export interface ImageBlockMasks<T> {
  ffn?: T;
  heads?: T;
}

/** The masks of one MCi stage: its residual-stream channels and, per block, `blocks[j]` (null: none there). */
export interface ImageStageMasks<T> {
  channels?: T;
  blocks: ReadonlyArray<ImageBlockMasks<T> | null>;
}

/** An MCi image tower's masks, one entry per stage. */
export interface ImageMasks<T> {
  stages: ReadonlyArray<ImageStageMasks<T>>;
}

/** Masks as tensors, for the masked model (`applyImageMasks`). */
export type ImageMaskSet = ImageMasks<tf.Tensor1D>;

/** Masks as values, for pruning (`pruneImage`): the deterministic masks of methods.md §3.7 step 1. */
export type ImageMaskValues = ImageMasks<Float32Array>;

/** What one MCi block can be masked on. */
export interface ImageBlockMaskSizes {
  kind: 'repmixer' | 'attention';
  /** Heads (null for a RepMixer block). */
  heads: number | null;
  /** ConvFFN hidden width. */
  ffn: number;
}

/** What one MCi stage can be masked on, and where its modules sit. */
export interface ImageStageMaskSizes {
  /** Residual-stream width. */
  channels: number;
  blocks: ImageBlockMaskSizes[];
  /** Index of the stage in `image_encoder.model.network`. */
  network: number;
  /** Index of the PatchEmbed feeding the stage (null for stage 0, fed by the stem). */
  downsampler: number | null;
  /** Index of the RepCPE before the stage (null: none). */
  posEmb: number | null;
}

/** The length every mask of an MCi image tower must have, and the tower's layout. */
export interface ImageMaskSizes {
  stages: ImageStageMaskSizes[];
  /** `conv_exp` output channels (its channel multiplier over the last stage's width is expand / channels). */
  expand: number;
}

const IMG = 'image_encoder.model.';

function fastVit(model: CLIP): FastViT {
  const m = model.imageEncoder.model;
  if (!(m instanceof FastViT)) throw new MclipError(`image masks: the image tower is a ${m.constructor.name}; masks apply to MCi (FastViT) towers`);
  return m;
}

/** The mask sizes and module positions of `model`'s MCi image tower, read off its modules. */
export function imageMaskSizes(model: CLIP): ImageMaskSizes {
  const vit = fastVit(model);
  const stages: ImageStageMaskSizes[] = [];
  let down: number | null = null;
  let cpe: number | null = null;
  vit.network.modules().forEach((m, n) => {
    if (m instanceof PatchEmbed) {
      down = n;
      return;
    }
    if (m instanceof RepCPE) {
      cpe = n;
      return;
    }
    if (!(m instanceof Sequential)) throw new MclipError(`image masks: ${IMG}network.${n} is a ${m.constructor.name}, expected a stage, a PatchEmbed or a RepCPE`);
    let channels = 0;
    const blocks = m.modules().map((b, j): ImageBlockMaskSizes => {
      if (b instanceof RepMixerBlock) {
        channels = b.tokenMixer.dim;
        return { kind: 'repmixer', heads: null, ffn: b.convffn.hidden };
      }
      if (b instanceof AttentionBlock) {
        channels = b.tokenMixer.dim;
        return { kind: 'attention', heads: b.tokenMixer.numHeads, ffn: b.convffn.hidden };
      }
      throw new MclipError(`image masks: ${IMG}network.${n}.${j} is a ${b.constructor.name}, neither a RepMixerBlock nor an AttentionBlock`);
    });
    if (blocks.length === 0) throw new MclipError(`image masks: ${IMG}network.${n} is an empty stage`);
    stages.push({ channels, blocks, network: n, downsampler: stages.length === 0 ? null : down, posEmb: cpe });
    down = null;
    cpe = null;
  });
  return { stages, expand: vit.convExp.outChannels };
}

/**
 * Checks that `masks` fit `sizes` (`length` gives a mask's length: a tensor's or an array's); throws naming
 * the first mask that does not.
 */
export function checkImageMasks<T>(masks: ImageMasks<T>, sizes: ImageMaskSizes, length: (m: T) => number, what = 'image masks'): void {
  const fit = (m: T | undefined, n: number | null, name: string): void => {
    if (m === undefined) return;
    if (n === null) throw new MclipError(`${what}: ${name}: the block has no such unit (a RepMixer block takes only an ffn mask)`);
    const got = length(m);
    if (got !== n) throw new MclipError(`${what}: ${name} has ${got} entries, expected ${n}`);
  };
  if (masks.stages.length !== sizes.stages.length) {
    throw new MclipError(`${what}: ${masks.stages.length} stage entries for an MCi tower of ${sizes.stages.length} stages`);
  }
  masks.stages.forEach((st, s) => {
    const sz = sizes.stages[s];
    fit(st.channels, sz.channels, `stages[${s}].channels`);
    if (st.blocks.length !== sz.blocks.length) {
      throw new MclipError(`${what}: stages[${s}] has ${st.blocks.length} block entries for a stage of ${sz.blocks.length} blocks (use null for an unmasked block)`);
    }
    st.blocks.forEach((b, j) => {
      if (!b) return;
      fit(b.heads, sz.blocks[j].heads, `stages[${s}].blocks[${j}].heads`);
      fit(b.ffn, sz.blocks[j].ffn, `stages[${s}].blocks[${j}].ffn`);
    });
  });
}

/** Which masks a set holds (per stage 'c' channels, per block 'H' heads and 'F' ffn): two sets with one layout agree. */
function layout<T>(m: ImageMasks<T>): string {
  return m.stages.map((st) => [st.channels ? 'c' : '-', ...st.blocks.map((b) => `${b?.heads ? 'H' : '-'}${b?.ffn ? 'F' : '-'}`)].join(',')).join('|');
}

function tensorLength(t: tf.Tensor1D): number {
  if (t.rank !== 1) throw new MclipError(`image masks: a mask of shape [${t.shape}], expected rank 1`);
  return t.shape[0];
}

/** The values of a mask set (copies), e.g. to prune with the masks a model was trained under. */
export function imageMaskValues(masks: ImageMaskSet): ImageMaskValues {
  const v = (t: tf.Tensor1D | undefined): Float32Array | undefined => (t ? Float32Array.from(t.dataSync() as Float32Array) : undefined);
  return {
    stages: masks.stages.map((st) => ({ channels: v(st.channels), blocks: st.blocks.map((b) => (b ? { heads: v(b.heads), ffn: v(b.ffn) } : null)) })),
  };
}

/** The masks on a model, from `applyImageMasks`. */
export interface AppliedImageMasks {
  /** The mask set the hooks read now. */
  readonly masks: ImageMaskSet;
  /** Makes the hooks read `masks` from the next forward on; same layout (which masks are present) as applied. */
  setMasks(masks: ImageMaskSet): void;
  /** Takes every hook off (idempotent). */
  remove(): void;
}

/**
 * Puts `masks` on `model`'s MCi image tower (see the file comment for where each multiplies). The layout —
 * which masks exist — is fixed here; their values may change with `setMasks`. No module is replaced, so an
 * optimiser over the model's variables may be built before or after.
 */
export function applyImageMasks(model: CLIP, masks: ImageMaskSet): AppliedImageMasks {
  const sizes = imageMaskSizes(model);
  const applied = new AppliedMasks<ImageMaskSet>('image masks', masks, (m) => checkImageMasks(m, sizes, tensorLength), layout, model, IMG);
  const current = (): ImageMaskSet => applied.masks;

  const channels = (s: number): tf.Tensor1D => need(current().stages[s].channels, `stages[${s}].channels`);
  const block = (s: number, j: number, k: 'heads' | 'ffn'): tf.Tensor1D => need(current().stages[s].blocks[j]?.[k], `stages[${s}].blocks[${j}].${k}`);
  /** 1 where kept, 0 where pruned (no gradient). */
  const kept = (z: tf.Tensor1D): tf.Tensor1D => tf.sign(tf.abs(z));
  /** 1[z^s] repeated m times per entry (output o of a channel-multiplier-m grouped conv reads input ⌊o/m⌋). */
  const keptRepeated = (s: number, m: number): tf.Tensor1D => tf.tile(kept(channels(s)).reshape([-1, 1]), [1, m]).reshape([-1]);
  const get = (path: string): Module => applied.module(path);
  const post = (path: string, fn: (x: tf.Tensor, y: tf.Tensor) => tf.Tensor): void => applied.post(path, fn);
  const pre = (path: string, fn: (x: tf.Tensor) => tf.Tensor): void => applied.pre(path, fn);
  /** Zeroes channels of a grouped conv's output before its SE (or after the module when it has none). */
  const zeroBeforeSe = (path: string, hasSe: boolean, ind: () => tf.Tensor1D): void => {
    if (hasSe) pre(`${path}.se`, (x) => x.mul(ind()));
    else post(path, (_x, y) => y.mul(ind()));
  };

  try {
    const vit = fastVit(model);
    sizes.stages.forEach((sz, s) => {
      const st = masks.stages[s];
      const has = st.channels !== undefined;
      const net = `network.${sz.network}`;
      // The stream's origin, and the coupled channels of the module that produces it.
      if (s === 0) {
        if (has) {
          post('patch_embed.1', (_x, y) => y.mul(kept(channels(0))));
          post('patch_embed', (_x, y) => y.mul(channels(0)));
        }
      } else {
        const d = sz.downsampler;
        if (d === null) throw new Error(`internal: MCi stage ${s} has no downsampler`);
        const prevHas = masks.stages[s - 1].channels !== undefined;
        if (has) post(`network.${d}`, (_x, y) => y.mul(channels(s)));
        if (has || prevHas) {
          const lkb = get(`network.${d}.proj.0`);
          if (!(lkb instanceof ReparamLargeKernelConv)) throw new MclipError(`image masks: ${IMG}network.${d}.proj.0 is a ${lkb.constructor.name}, expected a ReparamLargeKernelConv`);
          const m = sz.channels / sizes.stages[s - 1].channels;
          zeroBeforeSe(`network.${d}.proj.0`, lkb.se !== null, () => {
            if (!prevHas) return kept(channels(s));
            const up = keptRepeated(s - 1, m);
            return has ? up.mul(kept(channels(s))) : up;
          });
        }
      }
      if (has && sz.posEmb !== null) post(`network.${sz.posEmb}`, (x, y) => x.add(y.sub(x).mul(channels(s))));
      sz.blocks.forEach((b, j) => {
        const at = `${net}.${j}.`;
        const bm = st.blocks[j];
        if (bm?.ffn) pre(`${at}convffn.fc2`, (x) => x.mul(block(s, j, 'ffn')));
        if (bm?.heads) post(`${at}token_mixer.attn_probs`, (_x, p) => p.mul(block(s, j, 'heads').reshape([1, -1, 1, 1])));
        if (!has) return;
        if (b.kind === 'repmixer') {
          post(`${at}token_mixer`, (x, y) => x.add(y.sub(x).mul(channels(s))));
        } else {
          post(`${at}norm`, (_x, y) => y.mul(kept(channels(s))));
          post(`${at}token_mixer`, (_x, y) => y.mul(channels(s)));
        }
        post(`${at}convffn.conv`, (_x, y) => y.mul(kept(channels(s))));
        post(`${at}convffn`, (_x, y) => y.mul(channels(s)));
      });
    });
    const last = sizes.stages.length - 1;
    if (masks.stages[last].channels) {
      const m = sizes.expand / sizes.stages[last].channels;
      zeroBeforeSe('conv_exp', vit.convExp.se !== null, () => keptRepeated(last, m));
    }
  } catch (e) {
    applied.remove();
    throw e;
  }
  return applied;
}

function need(t: tf.Tensor1D | undefined, name: string): tf.Tensor1D {
  if (!t) throw new Error(`internal: image mask ${name} is missing from the current set`);
  return t;
}
