/**
 * TinyCLIP's structured masks on a CLIP's text tower (methods.md §3.3, §3.8), put on the model through the
 * core's seams only (forward hooks, the `attn_probs` site, `Module.replace`): the base model knows nothing of
 * masks, and `remove()` gives back a model whose outputs are bit-identical to before.
 *
 * One mask set per forward, shared by the batch (`TextMaskSet`): a hidden mask z^emb [d] shared by the whole
 * residual stream, and per text layer (`text_encoder.transformer.<i>`) a head mask z^head [H_l] (transformer
 * layers) and an intermediate mask z^int [F_l] (the FFN of a transformer layer, the ConvFFN of an `mct`
 * RepMixer block). Values in [0, 1]: 0 = pruned, fractional = kept at that soft value. Where they multiply:
 *
 * - z^head: head h's attention weights × z^head_h at `pre_norm_mha.1.attn_probs`; the attention output
 *   P·V is linear in P (softmax and sigmoid kernels alike), so this scales head h's output before `out_proj`.
 * - z^int: the GELU activations (input of `pre_norm_ffn.4`; of `convffn.fc2` in a RepMixer block).
 * - z^emb, transformer layers and embeddings: the token + positional embeddings (`embedding_dropout`'s
 *   output), the attention branch (`pre_norm_mha`'s output) and the FFN branch (`pre_norm_ffn`'s output);
 *   every LayerNorm (`pre_norm_mha.0`, `pre_norm_ffn.0`, `final_layer_norm`) becomes a `MaskedLayerNorm`
 *   (statistics over the kept channels, pruned channels output 0). So the residual stream is z ⊙ (…), zero on
 *   pruned channels, and equals the pruned model's stream on the kept ones.
 * - z^emb, RepMixer blocks (all their ops are per channel except fc1/fc2): the two residual writes are
 *   masked like the transformer branches — the token mixer's update x ↦ x + z ⊙ (mixer(x) − x) (its
 *   `γ ⊙ (mixer − BN)` term, fused or not) and the ConvFFN's output before the block's layer scale — and the
 *   ConvFFN's depthwise conv + BN (the block's "norm" before fc1) outputs 0 on pruned channels, as a masked
 *   LayerNorm does (its BN shift would otherwise feed fc1 a constant; an indicator, in train and eval mode
 *   alike). Folding: z into the two layer scales (or the fused mixer kernel), nothing into the depthwise
 *   conv/BN, whose kept channels see the same (already scaled) stream as in the pruned model.
 *
 * Masks change every step (a new hard-concrete sample): the hooks read the tensors of the current set at every
 * forward, and `setMasks` swaps the set (same layout). The mask tensors are the caller's — not copied, not
 * disposed here — and must stay alive while forwards use them; variables (or tensors built under the tape from
 * gate parameters) receive gradients through every site above.
 *
 * Caveat (a seam the core lacks): `Module.replace` disposes the module it replaces, so the original LayerNorm
 * objects cannot come back. The masked LayerNorms start from copies of their γ, β and `remove()` puts back
 * fresh LayerNorms holding the current values: outputs are exactly restored, but the LayerNorm *variables* are
 * new objects both after `applyTextMasks` and after `remove()` — an optimiser that holds model variables must
 * be built after applying the masks (and rebuilt after removing them). Without a hidden mask nothing is replaced.
 */
import * as tf from '../../base/tf.js';
import { MclipError } from '../../errors.js';
import type { CLIP } from '../../base/model/clip.js';
import { LayerNorm } from '../../base/layers/layer-norm.js';
import { RepMixerBlock } from '../../base/layers/repmixer-block.js';
import { TransformerEncoder } from '../../base/layers/transformer-encoder.js';
import { MaskedLayerNorm } from './masked-layer-norm.js';
import { AppliedMasks } from './mask-hooks.js';

/** The masks of one text layer (`heads`: transformer layers only). */
export interface TextLayerMasks<T> {
  heads?: T;
  ffn?: T;
}

/** A text tower's masks: `layers[i]` for `text_encoder.transformer.<i>` (null: no layer mask there). */
export interface TextMasks<T> {
  hidden?: T;
  layers: ReadonlyArray<TextLayerMasks<T> | null>;
}

/** Masks as tensors, for the masked model (`applyTextMasks`). */
export type TextMaskSet = TextMasks<tf.Tensor1D>;

/** Masks as values, for pruning (`pruneText`): the deterministic masks of methods.md §3.7 step 1. */
export type TextMaskValues = TextMasks<Float32Array>;

/** What one text layer can be masked on. */
export interface TextLayerMaskSizes {
  kind: 'attention' | 'repmixer';
  /** Heads (null for a RepMixer block, which has none). */
  heads: number | null;
  /** FFN units (transformer layer) or ConvFFN hidden width (RepMixer block). */
  ffn: number;
}

/** The length every mask of a text tower must have. */
export interface TextMaskSizes {
  hidden: number;
  layers: TextLayerMaskSizes[];
}

const TEXT = 'text_encoder.';

/** The mask sizes of `model`'s text tower, read off its modules. */
export function textMaskSizes(model: CLIP): TextMaskSizes {
  const text = model.textEncoder;
  const layers = text.transformer.modules().map((m, i): TextLayerMaskSizes => {
    if (m instanceof TransformerEncoder) return { kind: 'attention', heads: m.attn.numHeads, ffn: m.ffnDim };
    if (m instanceof RepMixerBlock) return { kind: 'repmixer', heads: null, ffn: m.convffn.hidden };
    throw new MclipError(`text masks: ${TEXT}transformer.${i} is a ${m.constructor.name}, neither a TransformerEncoder nor a RepMixerBlock`);
  });
  return { hidden: text.finalLayerNorm.dim, layers };
}

/**
 * Checks that `masks` fit `sizes` (`length` gives a mask's length: a tensor's or an array's); throws naming
 * the first mask that does not.
 */
export function checkTextMasks<T>(masks: TextMasks<T>, sizes: TextMaskSizes, length: (m: T) => number, what = 'text masks'): void {
  const fit = (m: T | undefined, n: number | null, name: string): void => {
    if (m === undefined) return;
    if (n === null) throw new MclipError(`${what}: ${name}: the layer has no such unit (a RepMixer block takes only hidden and ffn masks)`);
    const got = length(m);
    if (got !== n) throw new MclipError(`${what}: ${name} has ${got} entries, expected ${n}`);
  };
  fit(masks.hidden, sizes.hidden, 'hidden');
  if (masks.layers.length !== sizes.layers.length) {
    throw new MclipError(`${what}: ${masks.layers.length} layer entries for a text tower of ${sizes.layers.length} layers (use null for an unmasked layer)`);
  }
  masks.layers.forEach((l, i) => {
    if (!l) return;
    fit(l.heads, sizes.layers[i].heads, `layers[${i}].heads`);
    fit(l.ffn, sizes.layers[i].ffn, `layers[${i}].ffn`);
  });
}

/** Which masks a set holds ('h' hidden, per layer 'H' heads and 'F' ffn): two sets with one layout agree. */
function layout<T>(m: TextMasks<T>): string {
  return [m.hidden ? 'h' : '-', ...m.layers.map((l) => `${l?.heads ? 'H' : '-'}${l?.ffn ? 'F' : '-'}`)].join('|');
}

function tensorLength(t: tf.Tensor1D): number {
  if (t.rank !== 1) throw new MclipError(`text masks: a mask of shape [${t.shape}], expected rank 1`);
  return t.shape[0];
}

/** The values of a mask set (copies), e.g. to prune with the masks a model was trained under. */
export function textMaskValues(masks: TextMaskSet): TextMaskValues {
  const v = (t: tf.Tensor1D | undefined): Float32Array | undefined => (t ? Float32Array.from(t.dataSync() as Float32Array) : undefined);
  return {
    hidden: v(masks.hidden),
    layers: masks.layers.map((l) => (l ? { heads: v(l.heads), ffn: v(l.ffn) } : null)),
  };
}

/** The masks on a model, from `applyTextMasks`. */
export interface AppliedTextMasks {
  /** The mask set the hooks read now. */
  readonly masks: TextMaskSet;
  /** Makes the hooks read `masks` from the next forward on; same layout (which masks are present) as applied. */
  setMasks(masks: TextMaskSet): void;
  /** Takes every hook off and puts plain LayerNorms back (idempotent). */
  remove(): void;
}

/**
 * Puts `masks` on `model`'s text tower (see the file comment for where each multiplies). The layout — which
 * masks exist — is fixed here; their values may change with `setMasks`. Build any optimiser over the model's
 * variables after this call (the LayerNorms are replaced when there is a hidden mask).
 */
export function applyTextMasks(model: CLIP, masks: TextMaskSet): AppliedTextMasks {
  const sizes = textMaskSizes(model);
  const applied = new AppliedMasks<TextMaskSet>('text masks', masks, (m) => checkTextMasks(m, sizes, tensorLength), layout, model);
  const current = (): TextMaskSet => applied.masks;

  const hidden = (): tf.Tensor1D => need(current().hidden, 'hidden');
  const layer = (i: number, k: 'heads' | 'ffn'): tf.Tensor1D => need(current().layers[i]?.[k], `layers[${i}].${k}`);
  /** x ⊙ z over the last (channel) axis. */
  const scale = (x: tf.Tensor, z: tf.Tensor1D): tf.Tensor => x.mul(z);
  const post = (path: string, fn: (x: tf.Tensor, y: tf.Tensor) => tf.Tensor): void => applied.post(path, fn);
  const pre = (path: string, fn: (x: tf.Tensor) => tf.Tensor): void => applied.pre(path, fn);
  const maskNorm = (path: string): void => {
    const old = model.get(path);
    if (!(old instanceof LayerNorm)) throw new MclipError(`text masks: ${path} is a ${old.constructor.name}, expected a LayerNorm`);
    const ln = model.replace(path, MaskedLayerNorm.from(old, () => current().hidden ?? null));
    // Put a plain LayerNorm back unless something else has replaced ours since.
    applied.onRemove(() => {
      if (model.get(path) === ln) model.replace(path, ln.toLayerNorm());
    });
  };

  try {
    if (masks.hidden) {
      post(`${TEXT}embedding_dropout`, (_x, y) => scale(y, hidden()));
      maskNorm(`${TEXT}final_layer_norm`);
    }
    sizes.layers.forEach((s, i) => {
      const at = `${TEXT}transformer.${i}.`;
      const l = masks.layers[i];
      if (s.kind === 'attention') {
        if (l?.heads) post(`${at}pre_norm_mha.1.attn_probs`, (_x, p) => p.mul(layer(i, 'heads').reshape([1, -1, 1, 1])));
        if (l?.ffn) pre(`${at}pre_norm_ffn.4`, (x) => scale(x, layer(i, 'ffn')));
        if (masks.hidden) {
          post(`${at}pre_norm_mha`, (_x, y) => scale(y, hidden()));
          post(`${at}pre_norm_ffn`, (_x, y) => scale(y, hidden()));
          maskNorm(`${at}pre_norm_mha.0`);
          maskNorm(`${at}pre_norm_ffn.0`);
        }
      } else {
        if (l?.ffn) pre(`${at}convffn.fc2`, (x) => scale(x, layer(i, 'ffn')));
        if (masks.hidden) {
          post(`${at}token_mixer`, (x, y) => x.add(y.sub(x).mul(hidden())));
          post(`${at}convffn.conv`, (_x, y) => y.mul(tf.sign(tf.abs(hidden()))));
          post(`${at}convffn`, (_x, y) => scale(y, hidden()));
        }
      }
    });
  } catch (e) {
    applied.remove();
    throw e;
  }
  return applied;
}

function need(t: tf.Tensor1D | undefined, name: string): tf.Tensor1D {
  if (!t) throw new Error(`internal: text mask ${name} is missing from the current set`);
  return t;
}
