/**
 * Model cost: parameter counts from the module tree and multiply–accumulates (MACs) from the
 * layers at the real input size. Shapes come from one forward pass of a single sample, recorded by
 * removable forward hooks on the counted layers.
 *
 * Each layer is counted by the function registered for its class (`registerCost`, ./cost-registry.ts;
 * the built-ins in ./cost-layers.ts), the kernel part of attention by the one registered for the
 * module's kernel name (`registerAttentionCost`); a plug-in registers its own layers and kernels.
 *
 * What is counted (per sample, 1 MAC = one multiply + one add):
 * - Conv2d: Ho·Wo·Co·(Ci/groups)·kh·kw (dense, depthwise and 1×1; the 1×11 text RepMixer convs too).
 * - Linear: tokens·in·out (tokens = all leading positions of the output).
 * - Attention (MCi MHSA, text/ViT MultiHeadAttention): the kernel's count; softmax QKᵀ and A·V,
 *   2·heads·N²·d_h. Causal attention is counted in full (TF.js computes the whole N×N product).
 * - Projection matrices held as parameters (`proj` of the MCi GlobalPool2D / ViT head,
 *   `projection_layer` of the text tower): rows·in·out, on the pooled vector. (registered for
 *   GlobalPool2D, ProjectionHead and TextTransformer in ./cost-layers.ts).
 * Not counted: embedding look-ups and positional tables (0), biases, BatchNorm/LayerNorm,
 * activations, softmax, SE pooling, residual adds, layer scales, resizing. Count the fused
 * (reparameterised) model for inference cost: an unfused model also counts its train-time
 * branches (rbr_conv / rbr_scale / lkb_origin + small_conv …).
 */
import * as tf from '../base/tf.js';
import type { Module } from '../base/nn/module.js';
import { Embedding } from '../base/layers/embedding.js';
import type { CLIP } from '../base/model/clip.js';
import { costFor } from './cost-registry.js';
import './cost-layers.js';

export { registerCost, registerAttentionCost, attentionRecord, costFor, type CostFn, type CostInfo, type AttentionCostFn, type AttentionShape } from './cost-registry.js';

export type Tower = 'image' | 'text' | 'other';

/** How a layer's MACs change with the number of tokens it sees. */
export type MacScaling = 'tokens' | 'tokens2' | 'fixed';

export interface MacRecord {
  /** Dotted module path (relative to the profiled root). */
  name: string;
  tower: Tower;
  /** 'other': plug-in layers that are none of these (e.g. element-wise scales). */
  kind: 'conv' | 'linear' | 'attention' | 'projection' | 'other';
  /** MACs per sample at the profiled input size. */
  macs: number;
  /** Tokens (spatial positions or sequence positions) the layer saw per sample. */
  tokens: number;
  /** 'tokens': ∝ tokens (conv, linear); 'tokens2': ∝ tokens² (attention); 'fixed': pooled vectors. */
  scaling: MacScaling;
}

export interface ParamCount {
  image: number;
  text: number;
  /** Everything (image + text + logit scale). */
  total: number;
  /** The text token table alone (vocab × dim), part of `text`. */
  textTokenTable: number;
}

function towerOf(name: string): Tower {
  if (name === 'image_encoder' || name.startsWith('image_encoder.')) return 'image';
  if (name === 'text_encoder' || name.startsWith('text_encoder.')) return 'text';
  return 'other';
}

/** Trainable parameters per tower (BatchNorm running statistics are buffers and not counted). */
export function countParams(model: Module): ParamCount {
  const out: ParamCount = { image: 0, text: 0, total: 0, textTokenTable: 0 };
  for (const [name, p] of model.namedParams()) {
    if (!p.trainable) continue;
    const n = p.variable.size;
    out.total += n;
    const t = towerOf(name);
    if (t === 'image') out.image += n;
    else if (t === 'text') out.text += n;
  }
  for (const [name, m] of model.namedModules()) if (m instanceof Embedding && towerOf(name) === 'text') out.textTokenTable += m.weight.size;
  return out;
}

/**
 * MACs per sample of every counted layer under `root`, from one run of `run` (which must call
 * `root` or its descendants through `Module.call`; its result is disposed). Layers that `run` does
 * not reach are left out. `tower` labels the records (default: from the path, image_encoder / text_encoder).
 */
export function profileMacs(root: Module, run: () => tf.Tensor, opts: { tower?: Tower; prefix?: string } = {}): MacRecord[] {
  const counted = root.namedModules().flatMap(([name, m]) => {
    const fn = costFor(m);
    return fn ? [{ name, m, fn, shape: null as number[] | null }] : [];
  });
  // Only the output shapes are needed: hooks record them (no copies of the activations).
  const handles = counted.map((c) =>
    c.m.registerForwardHook((_m, _x, y) => {
      c.shape = y.shape.slice();
    }),
  );
  try {
    tf.tidy(run).dispose();
  } finally {
    for (const h of handles) h.remove();
  }
  const out: MacRecord[] = [];
  for (const { name, m, fn, shape } of counted) {
    if (!shape) continue;
    const full = (opts.prefix ?? '') + name;
    const r = fn(m, shape, { name: full, tower: opts.tower ?? towerOf(full), batch: shape[0] });
    if (r) out.push(r);
  }
  return out;
}

export interface RescaleOptions {
  /** Tokens per layer of the given tower (e.g. the text tokens actually present); scales every non-fixed record. */
  tokens?: number;
  /** Which tower `tokens` applies to (default 'text'). */
  tokensTower?: Tower;
  /**
   * Tokens kept per layer, keyed by a module path or path prefix (e.g.
   * `text_encoder.transformer.2`): token pruning/merging inside that layer. Overrides `tokens`.
   */
  tokensKept?: Record<string, number>;
}

/** Records with MACs recomputed for other token counts ('tokens' ∝ N, 'tokens2' ∝ N²). */
export function rescaleMacs(records: readonly MacRecord[], opts: RescaleOptions): MacRecord[] {
  const kept = Object.entries(opts.tokensKept ?? {}).sort((a, b) => b[0].length - a[0].length);
  return records.map((r) => {
    if (r.scaling === 'fixed') return { ...r };
    let n: number | undefined;
    const k = kept.find(([p]) => r.name === p || r.name.startsWith(p + '.'));
    if (k) n = k[1];
    else if (opts.tokens != null && r.tower === (opts.tokensTower ?? 'text')) n = opts.tokens;
    if (n == null) return { ...r };
    const f = n / r.tokens;
    return { ...r, tokens: n, macs: r.scaling === 'tokens' ? r.macs * f : r.macs * f * f };
  });
}

/** Sum of MACs, optionally of one tower. */
export function sumMacs(records: readonly MacRecord[], tower?: Tower): number {
  let s = 0;
  for (const r of records) if (tower == null || r.tower === tower) s += r.macs;
  return s;
}

/** MACs grouped by kind (conv / linear / attention / projection / other). */
export function macsByKind(records: readonly MacRecord[]): Record<MacRecord['kind'], number> {
  const out = { conv: 0, linear: 0, attention: 0, projection: 0, other: 0 };
  for (const r of records) out[r.kind] += r.macs;
  return out;
}

/** Tokens actually present per row of int32 ids [n, contextLength]: position of the EOT (the row's arg-max) + 1. */
export function presentTokens(tokens: ArrayLike<number>, contextLength: number): number[] {
  const n = tokens.length / contextLength;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let j = 1; j < contextLength; j++) if (tokens[i * contextLength + j] > tokens[i * contextLength + best]) best = j;
    out.push(best + 1);
  }
  return out;
}

export interface ModelCost {
  params: ParamCount;
  /** MACs per image / per text at the full input (image size², context length). */
  macs: { image: number; text: number };
  imageSize: number;
  contextLength: number;
  records: MacRecord[];
}

/**
 * Parameters and MACs of a CLIP model: one image [1, S, S, 3] (S = cfg image size unless given)
 * and one text [1, contextLength] (a dummy row, all positions) through the model.
 */
export function modelCost(model: CLIP, opts: { imageSize?: number; contextLength?: number } = {}): ModelCost {
  const s = opts.imageSize ?? model.cfg.image.imageSize;
  const ctx = opts.contextLength ?? model.cfg.text.contextLength;
  const image = profileMacs(model, () => tf.tidy(() => model.encodeImage(tf.zeros([1, s, s, 3]))));
  const text = profileMacs(model, () =>
    tf.tidy(() => {
      const ids = new Int32Array(ctx);
      ids[0] = 1;
      ids[ctx - 1] = 2; // EOT last: every position is "present"
      return model.encodeText(tf.tensor2d(ids, [1, ctx], 'int32'));
    }),
  );
  const records = [...image.filter((r) => r.tower === 'image'), ...text.filter((r) => r.tower === 'text')];
  return { params: countParams(model), macs: { image: sumMacs(records, 'image'), text: sumMacs(records, 'text') }, imageSize: s, contextLength: ctx, records };
}

/**
 * Mean text MACs over a batch of token rows when only the tokens actually present (up to the EOT)
 * are processed, e.g. `textMacsForTokens(cost.records, tokenizer.tokenize(captions), 77)`.
 */
export function textMacsForTokens(records: readonly MacRecord[], tokens: ArrayLike<number>, contextLength: number, tokensKept?: Record<string, number>): number {
  const counts = presentTokens(tokens, contextLength);
  if (counts.length === 0) return 0;
  let s = 0;
  for (const n of counts) s += sumMacs(rescaleMacs(records, { tokens: n, tokensKept }), 'text');
  return s / counts.length;
}

/**
 * Mean text MACs of the model as it runs now (token-reduction hooks included) over token rows
 * [n, contextLength]: each row is profiled on its own, so the records hold the token counts each
 * layer really saw (exact where the reducers' shapes depend on the row, unlike a rescaled profile).
 */
export function measuredTextMacs(model: CLIP, tokens: ArrayLike<number>, contextLength: number): number {
  const n = tokens.length / contextLength;
  if (n === 0) return 0;
  let s = 0;
  for (let i = 0; i < n; i++) {
    const row = Int32Array.from({ length: contextLength }, (_, j) => tokens[i * contextLength + j]);
    const records = profileMacs(model, () => tf.tidy(() => model.encodeText(tf.tensor2d(row, [1, contextLength], 'int32'))));
    s += sumMacs(records, 'text');
  }
  return s / n;
}
