import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync, renameSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Argv } from 'yargs';
import { withOptions, type OptionTable } from '../options.js';
import * as tf from '../../base/tf.js';
import { MclipError } from '../../errors.js';
import { loadModel } from '../../base/model/checkpoint.js';
import { reparameterize } from '../../base/model/reparameterize.js';
import { ClipTokenizer, resolveVocabDir } from '../../base/tokenizer/index.js';
import { preprocessBatch, type PreprocessSpec } from '../../base/preprocess/index.js';
import { preprocessFor } from '../../base/model/preprocess-table.js';
import { atomicWriteJson, readImageTextDataset, type ImageTextSample } from '../../base/data/index.js';
import {
  buildClassifier,
  embedImages,
  embedTexts,
  evaluateModel,
  renderTable,
  renderScatterSvg,
  scoreRetrieval,
  scoreZeroShot,
  splitBaselines,
  textMacsForTokens,
  writeReport,
  TEMPLATE_SETS,
  type Embeddings,
  type EvalRow,
  type LatencyChoice,
  type SplitBaselines,
  type ZeroShotClassifier,
} from '../../eval/index.js';
import { exportOnnx, ortLatency } from '../../export/index.js';
import { ENGINES, nchwToNhwc, type EngineName } from '../../eval/engine.js';
import { openEngine, ORT_THREADS, type EngineReport } from '../../eval/engine-ort.js';
import type { OnnxCacheEntry } from '../../eval/onnx-cache.js';
import type { LatencyStats, OrtLatency } from '../../eval/index.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CLIP } from '../../base/model/clip.js';
import type { HookHandle } from '../../base/nn/module.js';
import { startBackend, type GlobalArgs } from '../run.js';
import { startProgress, type Progress } from '../progress.js';
import { UsageError } from '../usage.js';
import { installTokenSettings, parseTokenArgs, textLayerCount, tokenFlags, tokensAsTrained, TOKEN_OPTIONS, type TokenArgs } from '../token-options.js';
import { measuredTextMacs } from '../../eval/cost.js';
import { formatShard, parseShard, shardItems, type ShardRange, type ShardSpec } from '../shard.js';

export interface EvalArgs extends GlobalArgs, TokenArgs {
  model: string[];
  data: string;
  split: string;
  arch?: string;
  vocab?: string;
  label: string;
  templates: string;
  limit?: number;
  sample?: number;
  batch: number;
  latency: boolean;
  latencyRuns: number;
  ort: boolean;
  /** What runs the embedding passes (default ort: the cached, verified ONNX export in onnxruntime-node). */
  engine?: EngineName;
  json?: string;
  plot?: string;
  /** `i/N`: embed only part i of N of the samples (whole batches) and write them to --json as a part for `mclip merge-results`. */
  shard?: string;
}

/** One model's engine in the report's meta. */
export type EngineEntry = EngineReport & { model: string; embedSeconds: number; samplesPerSecond: number };

export const EVAL_PART_FORMAT = 'mclip-eval-part';

/** Row-major float32 embeddings, stored as little-endian bytes in base64 (exact). */
export interface StoredEmbeddings {
  n: number;
  dim: number;
  data: string;
}

/** What every part of one sharded eval must agree on (merge-results compares it key by key). */
export interface EvalPartConfig {
  data: string;
  split: string;
  label: string;
  templates: string;
  batch: number;
  engine: EngineName;
  latency: boolean;
  ort: boolean;
  latencyRuns: number;
  limit: number | null;
  sample: number | null;
  models: { name: string; path: string }[];
  /** samples of the whole (limited / sampled) split */
  samples: number;
  classNames: string[];
  /** sha256 of the sample keys, one a line, in order */
  keys: string;
  /** sha256 of the captions, one a line, in order */
  captions: string;
  /** the split's class index of every sample */
  labels: number[];
  count: number;
}

/** One model's share of a part: its row without zeroShot / retrieval, the classifier and the embeddings of the part's samples. */
export interface EvalPartModel {
  name: string;
  /** params, MACs (textPresent over every caption of the split), latency (part 0 only, when measured) */
  row: EvalRow;
  engine: EngineEntry;
  /** W [numClasses, dim] from every class prompt (each part builds it in full) */
  classifier: StoredEmbeddings;
  images: StoredEmbeddings;
  captions: StoredEmbeddings;
}

/** `mclip eval --shard i/N --json PART`: one part of a sharded evaluation. */
export interface EvalPart {
  format: typeof EVAL_PART_FORMAT;
  version: 1;
  createdAt: string;
  index: number;
  count: number;
  /** the samples [start, end) of the split this part embedded */
  range: ShardRange;
  config: EvalPartConfig;
  baselines: SplitBaselines;
  models: EvalPartModel[];
}

/** Float32 rows → StoredEmbeddings (little-endian bytes, base64: round-trips bit for bit). */
export function storeEmbeddings(e: Embeddings): StoredEmbeddings {
  const le = new Float32Array(e.data);
  const view = new DataView(le.buffer);
  for (let i = 0; i < le.length; i++) view.setFloat32(4 * i, e.data[i], true);
  return { n: e.n, dim: e.dim, data: Buffer.from(le.buffer).toString('base64') };
}

/** StoredEmbeddings → Embeddings; throws MclipError (naming `what`) when the sizes disagree. */
export function loadEmbeddings(s: StoredEmbeddings, what: string): Embeddings {
  const bytes = Buffer.from(s.data, 'base64');
  if (!Number.isInteger(s.n) || !Number.isInteger(s.dim) || bytes.byteLength !== 4 * s.n * s.dim)
    throw new MclipError(`${what}: ${bytes.byteLength} bytes of embeddings for ${s.n}×${s.dim} float32 values`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const data = new Float32Array(s.n * s.dim);
  for (let i = 0; i < data.length; i++) data[i] = view.getFloat32(4 * i, true);
  return { data, n: s.n, dim: s.dim };
}

/** The zero-shot and retrieval figures of a row from the embeddings (as evaluateModel scores them). */
export function scoreRow(clf: ZeroShotClassifier, images: Embeddings, captions: Embeddings, labels: ArrayLike<number>, textToImage: ArrayLike<number>): Pick<EvalRow, 'zeroShot' | 'retrieval'> {
  const zs = scoreZeroShot(images, labels, clf);
  const rm = scoreRetrieval(images, captions, textToImage);
  return { zeroShot: { top1: zs.top1, top5: zs.top5 }, retrieval: { i2t: rm.i2t, t2i: rm.t2i } };
}

function sha256Lines(lines: readonly string[]): string {
  const h = createHash('sha256');
  for (const l of lines) h.update(l).update('\n');
  return h.digest('hex');
}

/** `NAME=PATH` or `PATH` (name = file name without extension). */
function parseModelSpec(spec: string): { name: string; path: string } {
  const i = spec.indexOf('=');
  if (i > 0 && !existsSync(spec)) return { name: spec.slice(0, i), path: spec.slice(i + 1) };
  return { name: basename(spec).replace(/\.(safetensors|pt|pth)$/i, ''), path: spec };
}

/** `n` samples evenly spaced over `all` (the first of each stride), in order; all of them when n ≥ all.length. */
export function evenlySpaced<T>(all: T[], n: number): T[] {
  if (n >= all.length) return all;
  return Array.from({ length: n }, (_, i) => all[Math.floor((i * all.length) / n)]);
}

async function loadSamples(dir: string, split: string, limit: number | undefined): Promise<ImageTextSample[]> {
  if (!existsSync(dir)) throw new MclipError(`${dir}: data folder not found (build one with 'mclip data emoji --out ${dir}')`);
  const reader = readImageTextDataset(dir, split);
  const out: ImageTextSample[] = [];
  for await (const s of reader) {
    out.push(s);
    if (limit !== undefined && out.length >= limit) break;
  }
  const sum = reader.summary;
  if (sum.skipped > 0) console.error(`mclip: ${dir}/${split}: skipped ${sum.skipped} damaged sample(s): ${sum.problems.slice(0, 3).map((p) => `${p.shard}${p.key ? ` ${p.key}` : ''}: ${p.reason}`).join('; ')}`);
  if (out.length === 0) throw new MclipError(`${dir}/${split}: no samples`);
  return out;
}

/** The template-set names `--templates` accepts. */
export const TEMPLATE_CHOICES: readonly string[] = Object.keys(TEMPLATE_SETS);

/** `--templates` must name a known set; checked before any data loads. */
export function checkTemplates(name: string): void {
  if (!Object.hasOwn(TEMPLATE_SETS, name)) throw new UsageError(`--templates: unknown template set '${name}' (choices: ${TEMPLATE_CHOICES.join(', ')})`);
}

/** Preprocesses every sample's image (NHWC in [0, 1]); `onImage` after each one. */
async function imagesTensor(samples: ImageTextSample[], size: number, spec: PreprocessSpec, onImage: () => void): Promise<tf.Tensor4D> {
  // decoded 8 at a time (sharp works on the libuv pool meanwhile: one at a time left the main thread idle for
  // ~1 s of a 3,645-image eval), then NCHW → NHWC in JS (a whole-tensor transpose in tfjs cost ~0.35 s there)
  const { data } = await preprocessBatch(samples.map((s) => Buffer.from(s.image)), size, 8, spec, onImage);
  return tf.tensor4d(nchwToNhwc(data, samples.length, size, size), [samples.length, size, size, 3]);
}

/**
 * Times both towers in onnxruntime-node: those of the engine's cached export when there is one, else
 * of the (fused) model exported to a temporary ONNX file, verified against tfjs.
 */
async function measureOrt(model: CLIP, runs: number, batch: number, cached: OnnxCacheEntry | undefined): Promise<OrtLatency> {
  const dir = cached ? null : mkdtempSync(join(tmpdir(), 'mclip-eval-'));
  try {
    const path = dir ? join(dir, 'model.onnx') : '';
    if (dir) await exportOnnx(model, path, { tower: 'both' });
    let version: string | undefined;
    const stats = async (tower: 'image' | 'text', b: number): Promise<LatencyStats> => {
      const file = cached ? cached[tower] : path;
      const r = await ortLatency(file, tower, { batch: b, runs, threads: ORT_THREADS });
      version = r.version;
      return { batch: b, warmup: r.warmup, runs: r.runs, medianMs: r.medianMs, p90Ms: r.p90Ms, meanMs: r.meanMs, minMs: r.minMs, maxMs: r.maxMs };
    };
    const image = { b1: await stats('image', 1), bN: await stats('image', batch) };
    const text = { b1: await stats('text', 1), bN: await stats('text', batch) };
    return { image, text, provider: 'cpu', threads: ORT_THREADS, ...(version ? { version } : {}) };
  } finally {
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

function atomicWrite(path: string, text: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

/** Which latency the plot's x axis shows: ORT when it was measured, else tfjs; image + text, batch 1. */
export function plotLatency(args: Pick<EvalArgs, 'ort'>): LatencyChoice {
  return { engine: args.ort ? 'ort' : 'tfjs', tower: 'sum', batch: 'b1' };
}

/** Captions (evenly spaced) whose text MACs are measured one by one for a token-reduced model. */
const MEASURED_CAPTIONS = 200;

/** The larger batch of the latency measurements. */
const LATENCY_BATCH = 8;

export async function runEval(args: EvalArgs): Promise<void> {
  checkTemplates(args.templates);
  const shard = parseShard(args.shard);
  if (shard && !args.json) throw new UsageError(`--shard ${formatShard(shard)} needs --json PART.json (where this part's embeddings go; join the parts with mclip merge-results)`);
  if (shard && args.plot) throw new UsageError('--plot: not with --shard (the plot needs every sample: pass --plot to mclip merge-results)');
  const tokenFlagsGiven = [args.textPadding, args.pruneLayers, args.keep, args.mergeLayers, args.merge].some((v) => v !== undefined);
  parseTokenArgs(args, Number.MAX_SAFE_INTEGER); // the flags' form, before any data loads (the layer range: per model)
  if (shard && tokenFlagsGiven) throw new UsageError('--text-padding / --prune-layers / --merge-layers: not with --shard (a part would measure MACs on its own captions only)');
  const engineChoice = args.engine ?? 'ort';
  if (!ENGINES.includes(engineChoice)) throw new UsageError(`--engine: expected one of ${ENGINES.join(', ')}, got '${String(engineChoice)}'`);
  if (args.model.length === 0) throw new MclipError('give at least one --model');
  const specs = args.model.map(parseModelSpec);
  for (const s of specs) {
    if (!existsSync(s.path)) throw new MclipError(`${s.path}: model checkpoint not found`);
    if (!/\.(safetensors|pt|pth|bin|ckpt)$/i.test(s.path)) throw new MclipError(`${s.path}: unknown checkpoint extension (expected .pt, .pth or .safetensors)`);
  }
  if (args.sample !== undefined && !(Number.isInteger(args.sample) && args.sample > 0)) throw new MclipError(`--sample: expected a positive integer, got ${args.sample}`);
  if (args.sample !== undefined && args.limit !== undefined) throw new MclipError('--sample and --limit exclude each other: --limit takes the first N samples, --sample N evenly spaced ones');
  if (!(Number.isInteger(args.latencyRuns) && args.latencyRuns > 0)) throw new MclipError(`--latency-runs: expected a positive integer, got ${args.latencyRuns}`);
  const loaded = await loadSamples(args.data, args.split, args.limit);
  const samples = args.sample !== undefined ? evenlySpaced(loaded, args.sample) : loaded;
  const labelsRaw = samples.map((s) => s.labels[args.label]);
  const missing = labelsRaw.findIndex((l) => typeof l !== 'string');
  if (missing >= 0) throw new MclipError(`${args.data}: sample '${samples[missing].key}' has no label '${args.label}'`);
  const classNames = [...new Set(labelsRaw as string[])].sort();
  const labels = Int32Array.from(labelsRaw as string[], (l) => classNames.indexOf(l));
  const captions = samples.map((s) => s.caption);
  const textToImage = Int32Array.from(captions, (_, i) => i);
  const baselines = splitBaselines(labels, classNames, { textToImage, images: samples.length });
  // a part embeds whole --batch batches of the samples (the same batches as the unsharded run); classes, labels and baselines stay the split's
  const part = shard ? shardItems(samples, shard, { unit: args.batch, what: `batches of --batch ${args.batch} (${samples.length} samples)` }) : undefined;
  const mine = part ? part.items : samples;
  const tokenizer = ClipTokenizer.fromDir(resolveVocabDir(args.vocab));
  const backend = await startBackend(args);
  console.error(`mclip: ${samples.length} samples, ${classNames.length} classes ('${args.label}') from ${args.data}/${args.split}`);
  if (shard && part) console.error(`mclip: part ${formatShard(shard)}: samples ${part.range.start}–${part.range.end - 1} (${mine.length} of ${samples.length})`);

  // Progress over the inputs each model goes through: its images preprocessed (a size already
  // done counts at once), then what evaluateModel embeds (embeddingWork: class prompts, images
  // once, captions). Timing is not counted; the bar names it while it runs.
  const n = mine.length;
  const promptRows = classNames.length * TEMPLATE_SETS[args.templates].length;
  const perModel = n + promptRows + n + n;
  const tty = Boolean(process.stderr.isTTY);
  const progress: Progress = startProgress({ label: 'eval', total: perModel * specs.length, unit: 'inputs', quiet: args.quiet, tty });
  let done = 0;
  const advance = (rows: number, info: string) => {
    done += rows;
    progress.update(done, info);
  };
  const finished: string[] = [];
  const note = (line: string) => {
    if (tty && !args.quiet) finished.push(line); // a line would break the bar: print after it
    else console.error(line);
  };

  const rows: EvalRow[] = [];
  const engines: EngineEntry[] = [];
  const partModels: EvalPartModel[] = [];
  const tfjsDescription = `tfjs ${backend.name}, ${backend.threads} thread${backend.threads === 1 ? '' : 's'}`;
  // Preprocessed images by size and transform (models of one size may normalise differently: MobileCLIP2-S3/S4/L-14).
  const bySize = new Map<string, tf.Tensor4D>();
  try {
    for (const spec of specs) {
      const t0 = Date.now();
      progress.update(done, `${spec.name}: loading`);
      const { model } = await loadModel(spec.path, { arch: args.arch });
      let tokenHooks: HookHandle | undefined;
      try {
        reparameterize(model);
        // Token reduction (padding policy, pruning, merging) runs as hooks on the tfjs text tower:
        // such a model is embedded and timed in tfjs (its ONNX export is the model as trained). The
        // `truncate` policy alone has an ONNX form (tokens [batch, seq]): with --engine ort it embeds there,
        // each batch cut to its longest caption as the hooks do; the hooks (installed after the export, which
        // verifies against the plain tower) give the tfjs fallback, the tfjs latency and the text MACs.
        const tokens = parseTokenArgs(args, textLayerCount(model));
        const reduced = !tokensAsTrained(tokens);
        const ortTruncate = engineChoice === 'ort' && tokens.padding === 'truncate' && tokensAsTrained({ ...tokens, padding: 'as-trained' });
        if (reduced && !ortTruncate) {
          tokenHooks = installTokenSettings(model, tokens);
          note(`mclip: ${spec.name}: text tokens ${tokenFlags(tokens).join(' ')}: embedded and timed in tfjs (hooks on the text tower); no ORT latency; text MACs measured on the captions`);
        }
        if (tokenizer.vocabSize !== model.cfg.text.vocabSize) {
          throw new MclipError(`${spec.path}: text vocabulary ${model.cfg.text.vocabSize} ≠ tokenizer's ${tokenizer.vocabSize} (pass the model's --vocab)`);
        }
        const size = model.cfg.image.imageSize;
        const pre = preprocessFor(model.cfg);
        const key = `${size} ${JSON.stringify(pre)}`;
        if (!bySize.has(key)) bySize.set(key, await imagesTensor(mine, size, pre, () => advance(1, `${spec.name}: preprocessing ${size}×${size}`)));
        else advance(n, `${spec.name}: images already preprocessed`);
        const images = bySize.get(key)!;
        if (shard) {
          partModels.push(await embedPart(spec.name, model, tokenizer, images, { args, shard, classNames, captions, mine: captions.slice(part!.range.start, part!.range.end), tfjsDescription, path: spec.path, note, advance, progress: (info) => progress.update(done, info) }));
          continue;
        }
        const zeroShot = { images, labels, classNames, templates: args.templates };
        const retrieval = { images, captions, textToImage };
        if (engineChoice === 'ort') progress.update(done, `${spec.name}: ONNX engine (export + verify on the first run)`);
        const opened = await openEngine(reduced && !ortTruncate ? 'tfjs' : engineChoice, model, { checkpoint: spec.path, tfjsDescription, ...(ortTruncate ? { textPadding: 'truncate' as const } : {}) });
        try {
          if (ortTruncate) {
            tokenHooks = installTokenSettings(model, tokens);
            note(`mclip: ${spec.name}: text tokens ${tokenFlags(tokens).join(' ')}: embedded in ${opened.engine.name === 'ort' ? "onnxruntime (the 'truncate' export, each batch cut to its longest caption)" : 'tfjs (hooks on the text tower)'}; timed in tfjs; no ORT latency; text MACs measured on the captions`);
          }
          if (!args.quiet || opened.report.fallback) note(`mclip: ${spec.name}: ${opened.line}`);
          let ort: OrtLatency | undefined;
          if (args.latency && args.ort && !reduced) {
            progress.update(done, `${spec.name}: ${opened.onnx ? '' : 'ONNX export + '}ORT latency`);
            ort = await measureOrt(model, args.latencyRuns, LATENCY_BATCH, opened.onnx);
          }
          // embedding throughput: from the first embedded row to the start of the latency timing (or the end)
          const e0 = performance.now();
          let e1: number | undefined;
          const ev = await evaluateModel(spec.name, model, tokenizer, {
            zeroShot,
            retrieval,
            latency: args.latency ? { runs: args.latencyRuns, batch: LATENCY_BATCH } : false,
            ort,
            batchSize: args.batch,
            engine: opened.engine,
            onProgress: (phase, k) => {
              if (phase === 'latency') e1 ??= performance.now();
              advance(k, `${spec.name}: ${phase === 'latency' ? `tfjs latency` : `${phase} (${opened.engine.name})`}`);
            },
          });
          if (reduced) ev.row.macs.textPresent = ev.row.macs.textReduced = measuredTextMacs(model, tokenizer.tokenize(evenlySpaced(captions, MEASURED_CAPTIONS), model.cfg.text.contextLength), model.cfg.text.contextLength);
          const embedSeconds = ((e1 ?? performance.now()) - e0) / 1000;
          const samplesPerSecond = n / Math.max(embedSeconds, 1e-9);
          engines.push({ model: spec.name, ...opened.report, embedSeconds, samplesPerSecond });
          rows.push(ev.row);
          note(
            `mclip: ${spec.name}: top-1 ${(100 * (ev.row.zeroShot?.top1 ?? 0)).toFixed(1)} % in ${((Date.now() - t0) / 1000).toFixed(1)} s ` +
              `(${opened.engine.name}: ${n} samples embedded in ${embedSeconds.toFixed(2)} s, ${samplesPerSecond.toFixed(1)} samples/s)`,
          );
        } finally {
          await opened.engine.dispose();
        }
      } finally {
        tokenHooks?.remove();
        model.dispose();
      }
    }
  } finally {
    progress.stop();
    for (const line of finished) console.error(line);
    for (const t of bySize.values()) t.dispose();
  }
  if (shard && part && args.json) {
    const keys = samples.map((s) => s.key);
    const config: EvalPartConfig = {
      data: args.data,
      split: args.split,
      label: args.label,
      templates: args.templates,
      batch: args.batch,
      engine: engineChoice,
      latency: args.latency,
      ort: args.ort,
      latencyRuns: args.latencyRuns,
      limit: args.limit ?? null,
      sample: args.sample ?? null,
      models: specs,
      samples: samples.length,
      classNames,
      keys: sha256Lines(keys),
      captions: sha256Lines(captions),
      labels: Array.from(labels),
      count: shard.count,
    };
    const out: EvalPart = { format: EVAL_PART_FORMAT, version: 1, createdAt: new Date().toISOString(), index: shard.index, count: shard.count, range: part.range, config, baselines, models: partModels };
    mkdirSync(dirname(args.json), { recursive: true });
    atomicWriteJson(args.json, out);
    console.error(`mclip: part ${formatShard(shard)} written to ${args.json} (join all ${shard.count} parts with mclip merge-results)`);
    return;
  }
  console.log(renderTable(rows, { baselines }));
  if (args.latency) {
    console.log(`latency: tfjs ${backend.name} (${backend.package}, ${backend.threads} thread${backend.threads === 1 ? '' : 's'})${args.ort ? `; ORT onnxruntime-node CPU (${ORT_THREADS} threads)` : ''}; median of ${args.latencyRuns} runs after warm-up, batch 1 (batch ${LATENCY_BATCH} in the JSON report)`);
  }
  if (args.json) {
    writeReport(args.json, rows, { data: args.data, split: args.split, label: args.label, samples: samples.length, classes: classNames.length, templates: args.templates, batch: args.batch, engine: engineChoice, engines }, baselines);
    console.error(`mclip: report written to ${args.json}`);
  }
  if (args.plot) {
    atomicWrite(args.plot, renderScatterSvg(rows, { x: args.latency ? 'latency' : 'macs', y: 'top1', latency: plotLatency(args) }));
    console.error(`mclip: plot written to ${args.plot}`);
  }
}

interface PartContext {
  args: EvalArgs;
  shard: ShardSpec;
  classNames: string[];
  /** every caption of the split (for MACs.textPresent) */
  captions: string[];
  /** the part's captions */
  mine: string[];
  tfjsDescription: string;
  path: string;
  note: (line: string) => void;
  advance: (rows: number, info: string) => void;
  progress: (info: string) => void;
}

/**
 * One model's share of a part: the classifier from every class prompt, the embeddings of the part's
 * images and captions (the calls, options and batches of evaluateModel, so the numbers are the
 * unsharded run's), and its row: cost, MACs over every caption, latency in part 0 only.
 */
async function embedPart(name: string, model: CLIP, tokenizer: ClipTokenizer, images: tf.Tensor4D, c: PartContext): Promise<EvalPartModel> {
  const { args } = c;
  const t0 = Date.now();
  if ((args.engine ?? 'ort') === 'ort') c.progress(`${name}: ONNX engine (export + verify on the first run)`);
  const opened = await openEngine(args.engine ?? 'ort', model, { checkpoint: c.path, tfjsDescription: c.tfjsDescription });
  try {
    if (!args.quiet || opened.report.fallback) c.note(`mclip: ${name}: ${opened.line}`);
    const measure = args.latency && c.shard.index === 0;
    let ort: OrtLatency | undefined;
    if (measure && args.ort) {
      c.progress(`${name}: ${opened.onnx ? '' : 'ONNX export + '}ORT latency`);
      ort = await measureOrt(model, args.latencyRuns, LATENCY_BATCH, opened.onnx);
    }
    const enc = opened.engine;
    const ctx = model.cfg.text.contextLength;
    const embed = { batchSize: args.batch, contextLength: ctx };
    const rows = (phase: string) => (k: number) => c.advance(k, `${name}: ${phase} (${enc.name})`);
    const e0 = performance.now();
    const clf = await buildClassifier(enc, tokenizer, c.classNames, { ...embed, templates: args.templates, onRows: rows('class prompts') });
    const ie = await embedImages(enc, images, { ...embed, onRows: rows('images') });
    const te = await embedTexts(enc, tokenizer, c.mine, { ...embed, onRows: rows('captions') });
    const embedSeconds = (performance.now() - e0) / 1000;
    const samplesPerSecond = ie.n / Math.max(embedSeconds, 1e-9);
    if (measure) c.advance(0, `${name}: tfjs latency`);
    const ev = await evaluateModel(name, model, tokenizer, { latency: measure ? { runs: args.latencyRuns, batch: LATENCY_BATCH } : false, ort, batchSize: args.batch, engine: enc });
    ev.row.macs.textPresent = textMacsForTokens(ev.cost.records, tokenizer.tokenize(c.captions, ctx), ctx);
    c.note(`mclip: ${name}: part ${formatShard(c.shard)} in ${((Date.now() - t0) / 1000).toFixed(1)} s (${enc.name}: ${ie.n} samples embedded in ${embedSeconds.toFixed(2)} s, ${samplesPerSecond.toFixed(1)} samples/s)`);
    return {
      name,
      row: ev.row,
      engine: { model: name, ...opened.report, embedSeconds, samplesPerSecond },
      classifier: storeEmbeddings({ data: clf.weights, n: clf.numClasses, dim: clf.dim }),
      images: storeEmbeddings(ie),
      captions: storeEmbeddings(te),
    };
  } finally {
    await opened.engine.dispose();
  }
}

export const EVAL_OPTIONS = {
  model: { type: 'string', array: true, demandOption: true, describe: 'checkpoint (or NAME=PATH); the first is the baseline' },
  data: { type: 'string', demandOption: true, describe: 'dataset folder (mclip data …)' },
  split: { type: 'string', default: 'eval', describe: 'split folder inside --data' },
  arch: { type: 'string', describe: 'architecture for checkpoints that carry no config' },
  vocab: { type: 'string', describe: 'tokenizer folder (else $MCLIP_VOCAB)' },
  label: { type: 'string', default: 'category', describe: 'label key used as the zero-shot class' },
  templates: { type: 'string', default: 'emoji', describe: `prompt template set: ${TEMPLATE_CHOICES.join(' | ')}` },
  limit: { type: 'number', describe: 'evaluate on the first N samples' },
  sample: { type: 'number', describe: 'evaluate on N samples evenly spaced over the split (all categories kept in proportion)' },
  batch: { type: 'number', default: 32, describe: 'batch size' },
  latency: { type: 'boolean', default: true, describe: 'time each encoder (use --no-latency to skip)' },
  'latency-runs': { type: 'number', default: 30, describe: 'timed runs per measurement' },
  ort: { type: 'boolean', default: true, describe: 'also time the ONNX export (verified) in onnxruntime-node (--no-ort to skip)' },
  engine: { type: 'string', default: 'ort', choices: ENGINES, describe: 'what embeds (ort | tfjs): ort = the checkpoint\'s verified ONNX export in onnxruntime-node (cached by checkpoint hash in $MCLIP_CACHE_DIR/onnx), falling back to tfjs with the reason; tfjs = the tfjs model' },
  json: { type: 'string', describe: 'write the JSON report here' },
  plot: { type: 'string', describe: 'write the accuracy-vs-latency SVG here' },
  shard: { type: 'string', describe: 'i/N: embed only part i (0 ≤ i < N) of the samples, in whole --batch batches, and write them to --json as a part (latency: part 0 only); mclip merge-results joins the N parts into the unsharded report' },
  ...TOKEN_OPTIONS,
} as const satisfies OptionTable;

export function evalCommand(y: Argv): Argv {
  return y.command<EvalArgs>(
    'eval',
    'zero-shot accuracy and retrieval against params, MACs and latency, one row per model',
    (a) =>
      withOptions(a, EVAL_OPTIONS) as unknown as Argv<EvalArgs>,
    (args) => runEval(args),
  );
}
