/**
 * One model → one `EvalRow`: cost (params, MACs), optional tfjs latency, optional zero-shot and
 * retrieval on caller-provided data. Image tensors stay owned by the caller; when zero-shot and
 * retrieval get the same image tensor its embeddings are computed once. The embeddings come from
 * `opts.engine` when given (e.g. the model's ONNX export in onnxruntime, engine-ort.ts), else from
 * the tfjs model; cost and tfjs latency always use the tfjs model.
 */
import type * as tf from '../base/tf.js';
import type { CLIP } from '../base/model/clip.js';
import { modelCost, textMacsForTokens, type ModelCost } from './cost.js';
import { measureLatency, type ModelLatencyOptions, type OrtLatency } from './latency.js';
import { scoreRetrieval, type RetrievalMetrics } from './retrieval.js';
import { buildClassifier, scoreZeroShot, type ZeroShotMetrics } from './zero-shot.js';
import { fillTemplate, resolveTemplates } from './templates.js';
import { embedImages, embedTexts, type Embeddings, type TextTokenizer } from './embed.js';
import type { EvalRow } from './report.js';
import type { ImageTextEncoder } from './engine.js';

export interface ZeroShotData {
  /** NHWC [N, H, W, 3] in [0, 1], preprocessed. */
  images: tf.Tensor4D;
  labels: ArrayLike<number>;
  classNames: readonly string[];
  /** Template strings or a set name (default 'openai'). */
  templates?: string | readonly string[];
}

export interface RetrievalData {
  images: tf.Tensor4D;
  captions: readonly string[];
  /** Caption i belongs to image textToImage[i]. */
  textToImage: ArrayLike<number>;
}

export interface EvaluateOptions {
  zeroShot?: ZeroShotData;
  retrieval?: RetrievalData;
  /** tfjs latency options, or false to skip timing (default: measured with defaults). */
  latency?: ModelLatencyOptions | false;
  /** ORT numbers measured elsewhere (src/export), copied into the row. */
  ort?: OrtLatency;
  batchSize?: number;
  contextLength?: number;
  /** Runs the embedding passes (default: the tfjs model). Stays owned by the caller. */
  engine?: ImageTextEncoder;
  /**
   * Progress: called after each embedded batch with its phase and row count (the rows add up to
   * `embeddingWork(opts)`), and once with ('latency', 0) before timing starts.
   */
  onProgress?: (phase: EvalPhase, rows: number) => void;
}

export type EvalPhase = 'class prompts' | 'images' | 'captions' | 'latency';

/** Rows `evaluateModel` embeds with these data: class × template prompts, images (once when both parts share the tensor), captions. */
export function embeddingWork(opts: Pick<EvaluateOptions, 'zeroShot' | 'retrieval'>): number {
  const z = opts.zeroShot;
  const r = opts.retrieval;
  let n = 0;
  if (z) n += z.classNames.length * resolveTemplates(z.templates ?? 'openai').length + (z.images.shape[0] as number);
  if (r) n += (r.images === z?.images ? 0 : (r.images.shape[0] as number)) + r.captions.length;
  return n;
}

export interface ModelEvaluation {
  row: EvalRow;
  cost: ModelCost;
  zeroShot?: ZeroShotMetrics;
  retrieval?: RetrievalMetrics;
}

/** Evaluates `model` (time the fused model: call reparameterize first). */
export async function evaluateModel(name: string, model: CLIP, tokenizer: TextTokenizer | null, opts: EvaluateOptions = {}): Promise<ModelEvaluation> {
  const ctx = opts.contextLength ?? model.cfg.text.contextLength;
  const cost = modelCost(model, { contextLength: ctx });
  const row: EvalRow = { name, params: { image: cost.params.image, text: cost.params.text, total: cost.params.total }, macs: { ...cost.macs } };
  const out: ModelEvaluation = { row, cost };
  const embed = { batchSize: opts.batchSize, contextLength: ctx };
  const enc = opts.engine ?? model;
  const progress = (phase: EvalPhase) => (opts.onProgress ? (rows: number) => opts.onProgress!(phase, rows) : undefined);
  const presentTexts: string[] = [];
  if (opts.zeroShot || opts.retrieval) {
    if (!tokenizer) throw new Error('a tokenizer is needed for zero-shot / retrieval evaluation');
  }
  let embedded: { of: tf.Tensor4D; emb: Embeddings } | undefined;
  const imageEmbeddings = async (images: tf.Tensor4D): Promise<Embeddings> => {
    if (embedded?.of !== images) embedded = { of: images, emb: await embedImages(enc, images, { ...embed, onRows: progress('images') }) };
    return embedded.emb;
  };
  if (opts.zeroShot && tokenizer) {
    const z = opts.zeroShot;
    const clf = await buildClassifier(enc, tokenizer, z.classNames, { ...embed, templates: z.templates, onRows: progress('class prompts') });
    const zs = scoreZeroShot(await imageEmbeddings(z.images), z.labels, clf);
    out.zeroShot = zs;
    row.zeroShot = { top1: zs.top1, top5: zs.top5 };
    const templates = resolveTemplates(z.templates ?? 'openai');
    for (const c of z.classNames) for (const t of templates) presentTexts.push(fillTemplate(t, c));
  }
  if (opts.retrieval && tokenizer) {
    const r = opts.retrieval;
    const ie = await imageEmbeddings(r.images);
    const te = await embedTexts(enc, tokenizer, r.captions, { ...embed, onRows: progress('captions') });
    const rm = scoreRetrieval(ie, te, r.textToImage);
    out.retrieval = rm;
    row.retrieval = { i2t: rm.i2t, t2i: rm.t2i };
    presentTexts.length = 0;
    presentTexts.push(...r.captions);
  }
  if (tokenizer && presentTexts.length > 0) {
    row.macs.textPresent = textMacsForTokens(cost.records, tokenizer.tokenize(presentTexts, ctx), ctx);
  }
  if (opts.latency !== false) {
    opts.onProgress?.('latency', 0);
    row.latency = { tfjs: await measureLatency(model, { contextLength: ctx, ...(opts.latency ?? {}) }) };
    if (opts.ort) row.latency.ort = opts.ort;
  } else if (opts.ort) {
    throw new Error('ort latency given without tfjs latency (latency: false)');
  }
  return out;
}
