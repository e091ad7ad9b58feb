/**
 * From text masks to a physically smaller text tower (methods.md §3.7 steps 2–3), on official-layout state
 * dicts like manual inheritance (`inherit.ts`), so the result loads anywhere with no config.
 *
 * Step 2, the surviving soft values folded into the weights (z = z^emb, zh = z^head, zi = z^int):
 * - embeddings: token and positional tables' columns × z (the mask on the embedded stream);
 * - transformer layers: `out_proj` columns of head h × zh_h, its rows and bias × z; `pre_norm_ffn.4`
 *   columns × zi, its rows and bias × z;
 * - RepMixer blocks: the block's `layer_scale` × z (the ConvFFN write), `convffn.fc2` columns × zi; the token
 *   mixer's update × z: its `layer_scale` × z, or — fused — `reparam_conv` kernel z·W + (1 − z)·δ (δ the centre
 *   tap, the identity) and bias × z.
 *
 * Step 3, removal: a pruned head's d_h rows of q, k and v (weights and bias) and its `out_proj` columns; a
 * pruned FFN unit's row of W₁/b₁ and column of W₂ (fc1/fc2 in a ConvFFN); a pruned hidden channel's column of
 * every reader (qkv, W₁, fc1), row of every writer (out_proj, W₂, fc2, their biases), its LayerNorm γ/β, its
 * entries in the RepMixer blocks' per-channel tensors (depthwise convs, BatchNorms and their statistics,
 * layer scales), the token/positional embedding column and the projection's row. The LayerNorms then
 * normalise over the kept width, as the masked LayerNorm did.
 *
 * A layer whose heads are all pruned keeps one head one channel wide (`heads: 1, headDim: 1`) with zero q, k,
 * v and zero `out_proj` column: our MultiHeadAttention has no zero-head form (and `TextLayerConfig` no
 * attention-free transformer layer), and this head contributes exactly nothing, so the layer's attention
 * branch is its (masked) `out_proj` bias, as in the masked model. Likewise an FFN with every unit pruned
 * keeps one unit with zero weights. A hidden mask that prunes every channel is an error.
 *
 * Head counts, which no shape fixes, travel in the returned config (the input's heads minus the pruned ones),
 * the `base` of `configFromStateDict`; the image tower and the logit scale are passed through untouched.
 */
import { MclipError } from '../../errors.js';
import type { StateDict, TensorData } from '../../base/io/tensor-data.js';
import { numel, toFloat32 } from '../../base/io/tensor-data.js';
import { CLIP } from '../../base/model/clip.js';
import { configFromStateDict, compactText } from '../../base/model/config-inference.js';
import { textLayers, type ClipConfig, type TextLayerConfig } from '../../base/model/configs.js';
import { isFusedStateDict } from '../../base/model/checkpoint.js';
import { exportStateDict, loadStateDict } from '../../base/model/state-dict.js';
import type { TextMaskValues } from './text-masks.js';
import { kept, maskValues, take, type Take } from './take.js';
import { pruneTransformerLayerKey, type Put } from './prune-transformer-layer.js';

export interface PrunedTextStateDict {
  /** Official-layout state dict with the smaller text tower (float32 text tensors; the image tower's, the logit scale and the BatchNorm counters shared with the input). */
  stateDict: StateDict;
  /** Its architecture (per-layer heads and widths; `name` + '_pruned'), read back by `configFromStateDict`. */
  config: ClipConfig;
}

export interface PrunedText extends PrunedTextStateDict {
  /** A new model of `config` with `stateDict` loaded (the source's train/eval mode). */
  model: CLIP;
}

const TEXT = 'text_encoder.';

const checkValues = (v: Float32Array | undefined, n: number, name: string): Float32Array => maskValues('pruneText', v, n, name);

/** How one text layer shrinks. */
interface LayerPlan {
  src: TextLayerConfig;
  /** Input units kept (heads: head indices) and the layer's masks (ones where absent). */
  heads: number[];
  zHeads: Float32Array | null;
  units: number[];
  zFfn: Float32Array;
  /** The all-pruned fallback is in use (one head of width 1 / one unit, zero weights). */
  noHeads: boolean;
  noUnits: boolean;
}

/**
 * The smaller state dict and config for text masks `masks` on `sd` (official layout, unfused or fused) of
 * architecture `config` (e.g. `configFromStateDict` of it; its text layers give the head counts).
 */
export function pruneTextStateDict(sd: StateDict, config: ClipConfig, masks: TextMaskValues): PrunedTextStateDict {
  const t = config.text;
  const layers = textLayers(t);
  if (masks.layers.length !== layers.length) {
    throw new MclipError(`pruneText: ${masks.layers.length} layer entries for a text tower of ${layers.length} layers (use null for an unmasked layer)`);
  }
  const z = checkValues(masks.hidden, t.dim, 'hidden');
  const hid = kept(z);
  if (hid.length === 0) throw new MclipError('pruneText: the hidden mask prunes every text channel');

  const plans: LayerPlan[] = layers.map((l, i) => {
    const m = masks.layers[i];
    const zFfn = checkValues(m?.ffn, l.ffnDim, `layers[${i}].ffn`);
    let units = kept(zFfn);
    const noUnits = units.length === 0;
    if (noUnits) units = [0];
    if (l.mixer === 'repmixer') {
      if (m?.heads) throw new MclipError(`pruneText: layers[${i}].heads: text layer ${i} is a RepMixer block, which has no heads`);
      return { src: l, heads: [], zHeads: null, units, zFfn, noHeads: false, noUnits };
    }
    const zHeads = checkValues(m?.heads, l.heads, `layers[${i}].heads`);
    let heads = kept(zHeads);
    const noHeads = heads.length === 0;
    if (noHeads) heads = [0];
    return { src: l, heads, zHeads, units, zFfn, noHeads, noUnits };
  });

  const out: StateDict = new Map();
  const f32 = (key: string): TensorData => {
    const v = sd.get(key);
    if (!v) throw new MclipError(`pruneText: the state dict has no '${key}'`);
    return v;
  };
  const put = (key: string, takes: readonly Take[], edit?: (data: Float32Array, shape: number[]) => void): void => {
    const v = f32(key);
    const r = take(v.shape, toFloat32(v), takes);
    if (edit) edit(r.data, r.shape);
    out.set(key, { dtype: 'float32', shape: r.shape, data: r.data });
  };

  for (const [key, v] of sd) {
    if (!key.startsWith(TEXT) || key.endsWith('.num_batches_tracked')) {
      out.set(key, v);
      continue;
    }
    const k = key.slice(TEXT.length);
    if (k === 'embedding_layer.weight') put(key, [{ axis: 1, keep: hid, scale: z }]);
    else if (k === 'positional_embedding.pos_embed.pos_embed') put(key, [{ axis: v.shape.length - 1, keep: hid, scale: z }]);
    else if (k === 'projection_layer') put(key, [{ axis: 0, keep: hid }]);
    else if (k === 'final_layer_norm.weight' || k === 'final_layer_norm.bias') put(key, [{ axis: 0, keep: hid }]);
    else {
      const m = /^transformer\.(\d+)\.(.+)$/.exec(k);
      const plan = m ? plans[Number(m[1])] : undefined;
      if (!m || !plan) throw new MclipError(`pruneText: unexpected text key '${key}'`);
      const rest = m[2];
      if (plan.src.mixer === 'attention') {
        if (!plan.zHeads) throw new Error('internal: not an attention layer');
        pruneTransformerLayerKey(key, rest, { ...plan, src: plan.src, zHeads: plan.zHeads }, z, hid, put, `pruneText: unexpected key '${key}' in a text transformer layer`);
      } else pruneRepMixerKey(key, rest, plan, z, hid, v, put);
    }
  }

  const sLayers: TextLayerConfig[] = plans.map((p) => {
    if (p.src.mixer === 'repmixer') return { mixer: 'repmixer', ffnDim: p.units.length };
    const l: TextLayerConfig = { mixer: 'attention', heads: p.heads.length, headDim: p.noHeads ? 1 : p.src.headDim, ffnDim: p.units.length };
    if (p.src.attention !== undefined) l.attention = p.src.attention;
    if (p.src.attentionParams !== undefined) l.attentionParams = structuredClone(p.src.attentionParams);
    return l;
  });
  const firstAttn = sLayers.find((l) => l.mixer === 'attention');
  const text = compactText({
    ...t,
    dim: hid.length,
    nHeads: firstAttn?.mixer === 'attention' ? firstAttn.heads : t.nHeads,
    ffnMultiplier: firstAttn ? firstAttn.ffnDim / hid.length : t.ffnMultiplier,
    layers: sLayers,
  });
  const suffix = '_pruned';
  const base: ClipConfig = { ...config, name: config.name.endsWith(suffix) ? config.name : config.name + suffix, text };
  return { stateDict: out, config: configFromStateDict(base, out, 'pruned text tower') };
}

function pruneRepMixerKey(key: string, rest: string, p: LayerPlan, z: Float32Array, hid: number[], v: TensorData, put: Put): void {
  const d = z.length;
  const noUnitsEdit = p.noUnits ? (data: Float32Array) => data.fill(0) : undefined;
  switch (rest) {
    case 'layer_scale':
    case 'token_mixer.layer_scale':
    case 'token_mixer.reparam_conv.bias':
      return put(key, [{ axis: 0, keep: hid, scale: z }]);
    case 'token_mixer.reparam_conv.weight': {
      // Depthwise [C, 1, kh, kw]: the update W − δ scaled by z, i.e. z·W + (1 − z)·δ; then the kept channels.
      const [c, m, kh, kw] = v.shape;
      if (c !== d || m !== 1) throw new MclipError(`pruneText: '${key}' has shape [${v.shape}], expected [${d}, 1, kh, kw]`);
      const centre = Math.floor(kh / 2) * kw + Math.floor(kw / 2);
      return put(key, [{ axis: 0, keep: hid, scale: z }], (data) => {
        hid.forEach((ch, j) => {
          data[j * kh * kw + centre] += 1 - z[ch];
        });
      });
    }
    case 'convffn.fc1.weight':
      return put(key, [{ axis: 0, keep: p.units }, { axis: 1, keep: hid }], noUnitsEdit);
    case 'convffn.fc1.bias':
      return put(key, [{ axis: 0, keep: p.units }], noUnitsEdit);
    case 'convffn.fc2.weight':
      return put(key, [{ axis: 0, keep: hid }, { axis: 1, keep: p.units, scale: p.zFfn }]);
    case 'convffn.fc2.bias':
      return put(key, [{ axis: 0, keep: hid }]);
    default:
      break;
  }
  // Per-channel tensors of the token mixer's branches and the ConvFFN's depthwise conv + BN.
  if (/^(token_mixer\.(mixer|norm)|convffn\.conv)\./.test(rest)) {
    if (v.shape[0] !== d) throw new MclipError(`pruneText: '${key}' has shape [${v.shape}], expected ${d} channels first`);
    return put(key, [{ axis: 0, keep: hid }]);
  }
  throw new MclipError(`pruneText: unexpected key '${key}' in a text RepMixer block`);
}

/**
 * `model` pruned by `masks`: its state dict (masked LayerNorms included: they keep the LayerNorm keys) cut by
 * `pruneTextStateDict`, and a new CLIP built from the inferred config with it loaded. The source model is
 * left as it is (remove its masks and dispose it when done).
 */
export function pruneText(model: CLIP, masks: TextMaskValues): PrunedText {
  const sd = exportStateDict(model);
  const config = configFromStateDict(model.cfg, sd, 'model');
  const r = pruneTextStateDict(sd, config, masks);
  const pruned = new CLIP(r.config, { inferenceMode: isFusedStateDict(r.stateDict) });
  try {
    loadStateDict(pruned, r.stateDict, 'pruned text tower');
  } catch (e) {
    pruned.dispose();
    throw e;
  }
  pruned.train(model.training);
  return { ...r, model: pruned };
}
