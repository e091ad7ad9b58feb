/**
 * ONNX export of a (fused) MobileCLIP model, verified against the tfjs model with onnxruntime-node.
 *
 * Graph interface (PyTorch conventions, dynamic batch axis `batch`):
 *  - `image`  float32 [batch, 3, H, W] NCHW, values in [0, 1]  → `image_features` float32 [batch, D]
 *  - `tokens` int64 [batch, S] (int32 with `tokensDtype: 'int32'`) → `text_features` float32 [batch, D];
 *    with `textPadding: 'truncate'` [batch, seq], seq ≤ S (rows cut by `truncateTokenRows`, ./text-padding.ts)
 * Features are the un-normalised `encode_image` / `encode_text` outputs (as `mclip embed`).
 * `tower: 'both'` writes ONE model holding both inputs and both outputs (two independent
 * sub-graphs; onnxruntime runs only the part a requested output needs, see `ortLatency`).
 * H×W is fixed at export time (the model's image size unless `imageSize` says otherwise).
 */
import { writeFileSync } from 'node:fs';
import * as tf from '../base/tf.js';
import { MclipError } from '../errors.js';
import type { CLIP } from '../base/model/clip.js';
import { reparameterize } from '../base/model/reparameterize.js';
import { GraphBuilder } from './graph.js';
import { OnnxEmitter, towerOutputDim } from './emit.js';
import { DataType, encodeModel, irVersionForOpset } from './onnx-proto.js';
import { verifyOnnx, type VerifyReport } from './verify.js';
import { EXPORT_TEXT_PADDINGS, TEXT_PADDING_KEY, isExportTextPadding, type ExportTextPadding } from './text-padding.js';

export { verifyOnnx, ortLatency, extractTower, randomImages, randomTokens, type VerifyReport, type LatencyResult, type LatencyOptions } from './verify.js';
export { decodeModel } from './onnx-proto.js';
export {
  EXPORT_TEXT_PADDINGS,
  TEXT_PADDING_KEY,
  isExportTextPadding,
  textPaddingOf,
  truncateTokenRows,
  truncatedLength,
  eotIndices,
  type ExportTextPadding,
} from './text-padding.js';
export {
  registerEmitter,
  registerChannelFirstEmitter,
  registerAttentionEmitter,
  emitterFor,
  attentionEmitter,
  type EmitFn,
  type AttentionEmitFn,
  type AttentionInputs,
  type ConvLayout,
  type EmitLayout,
} from './registry.js';
export { OnnxEmitter, type ConvSpec } from './emit.js';
export { f32, ownParam, tidyData } from './weights.js';

export type Tower = 'image' | 'text' | 'both';
export const TOWERS: readonly Tower[] = ['image', 'text', 'both'];

export const MIN_OPSET = 17;
export const MAX_OPSET = 21;

export interface BuildOnnxOptions {
  tower?: Tower;
  /** ONNX opset (17–21; default 17). From 20 on GELU is the `Gelu` op, before the Erf form. */
  opset?: number;
  /** Input image H×W (default: the config's image size). */
  imageSize?: number | [number, number];
  /** Element type of the `tokens` input (default int64, as PyTorch exports). */
  tokensDtype?: 'int64' | 'int32';
  /**
   * Padding policy of the text graph (./text-padding.ts; default `as-trained`, tokens [batch, S]);
   * `truncate`: tokens [batch, seq], seq ≤ S, recorded in the metadata as `mclip.text_padding`.
   */
  textPadding?: ExportTextPadding;
}

export interface ResolvedOptions {
  tower: Tower;
  opset: number;
  imageSize: [number, number];
  tokensDtype: 'int64' | 'int32';
  textPadding: ExportTextPadding;
}

export function resolveOptions(model: CLIP, opts: BuildOnnxOptions = {}): ResolvedOptions {
  const tower = opts.tower ?? 'both';
  if (!TOWERS.includes(tower)) throw new MclipError(`--tower must be one of ${TOWERS.join(', ')}, got '${String(tower)}'`);
  const opset = opts.opset ?? MIN_OPSET;
  if (!Number.isInteger(opset) || opset < MIN_OPSET || opset > MAX_OPSET) throw new MclipError(`--opset must be an integer in [${MIN_OPSET}, ${MAX_OPSET}], got ${opset}`);
  const s = opts.imageSize ?? model.cfg.image.imageSize;
  const imageSize: [number, number] = typeof s === 'number' ? [s, s] : s;
  if (!imageSize.every((v) => Number.isInteger(v) && v > 0)) throw new MclipError(`image size must be positive integers, got ${imageSize.join('×')}`);
  const tokensDtype = opts.tokensDtype ?? 'int64';
  if (tokensDtype !== 'int64' && tokensDtype !== 'int32') throw new MclipError(`tokens dtype must be int64 or int32, got '${String(tokensDtype)}'`);
  const textPadding = opts.textPadding ?? 'as-trained';
  if (!isExportTextPadding(textPadding)) throw new MclipError(`text padding must be one of ${EXPORT_TEXT_PADDINGS.join(', ')}, got '${String(textPadding)}'`);
  if (textPadding !== 'as-trained' && tower === 'image') throw new MclipError(`text padding '${textPadding}' needs the text tower (--tower text or both)`);
  return { tower, opset, imageSize, tokensDtype, textPadding };
}

/**
 * Builds the ONNX bytes of `model`'s inference graph. The model is reparameterised in place
 * first (a no-op when already fused) and put in eval mode.
 */
export function buildOnnx(model: CLIP, opts: BuildOnnxOptions = {}): Uint8Array {
  const o = resolveOptions(model, opts);
  reparameterize(model);
  const g = new GraphBuilder(o.opset);
  const em = new OnnxEmitter(g);
  if (o.tower !== 'text') {
    g.addInput('image', DataType.FLOAT, ['batch', 3, ...o.imageSize], 'RGB in [0, 1], NCHW, no mean/std normalisation');
    const y = tf.tidy(() => em.imageTower(model.imageEncoder.model, 'image', o.imageSize));
    g.addOutput(y, 'image_features', DataType.FLOAT, ['batch', towerOutputDim(model.imageEncoder.model)], 'encode_image (not normalised)');
  }
  if (o.tower !== 'image') {
    const s = model.textEncoder.positionalEmbedding.numEmbeddings;
    const dynamic = o.textPadding === 'truncate';
    const doc = dynamic
      ? `token ids (SOT … EOT, zero padded), seq ≤ ${s}: a batch cut to its longest row (+ spare pads), positions 0…seq−1; pooled at the first argmax`
      : 'token ids (SOT … EOT, zero padded); pooled at the first argmax';
    g.addInput('tokens', o.tokensDtype === 'int64' ? DataType.INT64 : DataType.INT32, ['batch', dynamic ? 'seq' : s], doc);
    const y = tf.tidy(() => em.textTower(model.textEncoder, 'tokens', 'text', { dynamicLength: dynamic }));
    g.addOutput(y, 'text_features', DataType.FLOAT, ['batch', towerOutputDim(model.textEncoder)], 'encode_text (not normalised)');
  }
  return encodeModel({
    irVersion: irVersionForOpset(o.opset),
    opsetImport: [{ domain: '', version: o.opset }],
    producerName: 'mclip',
    producerVersion: '0.1.0',
    docString: `MobileCLIP ${model.cfg.name} (${o.tower}), fused inference graph`,
    graph: g.toGraph(`mclip_${model.cfg.name}_${o.tower}`),
    metadataProps: [
      { key: 'mclip.arch', value: model.cfg.name },
      { key: 'mclip.tower', value: o.tower },
      { key: 'mclip.image_size', value: o.imageSize.join('x') },
      { key: 'mclip.context_length', value: String(model.textEncoder.positionalEmbedding.numEmbeddings) },
      { key: 'mclip.vocab_size', value: String(model.textEncoder.embeddingLayer.weight.shape[0]) },
      ...(o.textPadding !== 'as-trained' && o.tower !== 'image' ? [{ key: TEXT_PADDING_KEY, value: o.textPadding }] : []),
    ],
  });
}

export interface ExportOnnxOptions extends BuildOnnxOptions {
  /** Verify with onnxruntime-node (default true). */
  verify?: boolean;
  /** Batch of the random verification inputs (default 2). */
  verifyBatch?: number;
  /** Max relative difference allowed (default 1e-4). */
  tolerance?: number;
  seed?: number;
}

export interface ExportReport {
  path: string;
  bytes: number;
  tower: Tower;
  opset: number;
  textPadding: ExportTextPadding;
  verify: VerifyReport | null;
}

/**
 * Builds, verifies (onnxruntime-node vs the tfjs model on random inputs; throws an MclipError
 * naming the first output whose max|Δ|/max|ref| exceeds the tolerance) and writes `path`.
 * The file is written only when verification passes.
 */
export async function exportOnnx(model: CLIP, path: string, opts: ExportOnnxOptions = {}): Promise<ExportReport> {
  const o = resolveOptions(model, opts);
  const bytes = buildOnnx(model, o);
  let verify: VerifyReport | null = null;
  if (opts.verify ?? true) {
    verify = await verifyOnnx(model, bytes, { ...o, batch: opts.verifyBatch ?? 2, tolerance: opts.tolerance ?? 1e-4, seed: opts.seed ?? 0 });
  }
  try {
    writeFileSync(path, bytes);
  } catch (e) {
    throw new MclipError(`${path}: cannot write the ONNX file (${(e as Error).message})`);
  }
  return { path, bytes: bytes.length, tower: o.tower, opset: o.opset, textPadding: o.textPadding, verify };
}
