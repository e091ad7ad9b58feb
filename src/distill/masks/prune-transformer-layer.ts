/**
 * The transformer-layer key surgery the text (`prune-text.ts`) and ViT (`prune-vit.ts`) pruners share: both
 * towers' attention layers are the same `TransformerEncoder`s (official-layout keys `pre_norm_mha.*` and
 * `pre_norm_ffn.*`), cut by the hidden mask z and the layer's head and FFN masks.
 */
import { MclipError } from '../../errors.js';
import { range, type Take } from './take.js';

/** Writes `key` of the source state dict cut by `takes` (then `edit`ed) into the pruned one. */
export type Put = (key: string, takes: readonly Take[], edit?: (data: Float32Array, shape: number[]) => void) => void;

/** How one transformer layer shrinks (the part of a pruner's layer plan the key surgery reads). */
export interface TransformerLayerPlan {
  /** The source layer's head count and head width. */
  src: { heads: number; headDim: number };
  /** Kept heads and FFN units, and the layer's masks (ones where absent). */
  heads: readonly number[];
  zHeads: Float32Array;
  units: readonly number[];
  zFfn: Float32Array;
  /** The all-pruned fallback is in use (one head of width 1 / one unit, zero weights). */
  noHeads: boolean;
  noUnits: boolean;
}

/**
 * Puts the pruned form of `key` (`rest`: the part after `transformer.<i>.`) of a transformer layer planned as
 * `p`, with hidden mask `z` (kept channels `hid`). `unexpected`: the error message for a key of no such layer.
 */
export function pruneTransformerLayerKey(key: string, rest: string, p: TransformerLayerPlan, z: Float32Array, hid: number[], put: Put, unexpected: string): void {
  const { heads: nHeads, headDim: dh } = p.src;
  const inner = nHeads * dh;
  const width = p.noHeads ? 1 : dh;
  /** Kept inner channels (heads × their first `width` channels), and the soft head value of each inner channel. */
  const innerKeep = p.heads.flatMap((h) => range(width).map((c) => h * dh + c));
  const zHeads = p.zHeads;
  const zInner = Float32Array.from(range(inner), (c) => zHeads[Math.floor(c / dh)]);
  const qkvRows = [0, 1, 2].flatMap((b) => innerKeep.map((c) => b * inner + c));
  const zero = (data: Float32Array): void => {
    data.fill(0);
  };
  const noHeadsEdit = p.noHeads ? zero : undefined;
  const noUnitsEdit = p.noUnits ? zero : undefined;
  switch (rest) {
    case 'pre_norm_mha.0.weight':
    case 'pre_norm_mha.0.bias':
    case 'pre_norm_ffn.0.weight':
    case 'pre_norm_ffn.0.bias':
      return put(key, [{ axis: 0, keep: hid }]);
    case 'pre_norm_mha.1.qkv_proj.weight':
      return put(key, [{ axis: 0, keep: qkvRows }, { axis: 1, keep: hid }], noHeadsEdit);
    case 'pre_norm_mha.1.qkv_proj.bias':
      return put(key, [{ axis: 0, keep: qkvRows }], noHeadsEdit);
    case 'pre_norm_mha.1.out_proj.weight':
      return put(key, [{ axis: 0, keep: hid, scale: z }, { axis: 1, keep: innerKeep, scale: zInner }]);
    case 'pre_norm_mha.1.out_proj.bias':
      return put(key, [{ axis: 0, keep: hid, scale: z }]);
    case 'pre_norm_ffn.1.weight':
      return put(key, [{ axis: 0, keep: p.units }, { axis: 1, keep: hid }], noUnitsEdit);
    case 'pre_norm_ffn.1.bias':
      return put(key, [{ axis: 0, keep: p.units }], noUnitsEdit);
    case 'pre_norm_ffn.4.weight':
      return put(key, [{ axis: 0, keep: hid, scale: z }, { axis: 1, keep: p.units, scale: p.zFfn }]);
    case 'pre_norm_ffn.4.bias':
      return put(key, [{ axis: 0, keep: hid, scale: z }]);
    default:
      throw new MclipError(unexpected);
  }
}
