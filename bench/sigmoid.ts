/**
 * bench/sigmoid — sigmoid vs softmax attention (issue 13, methods.md §5) on the emoji data, at equal steps:
 *
 *   (a) from scratch: `mobileclip_tiny` (the reference model's config and vocabulary) from one random init
 *       (seed --seed; the stabiliser norms add no random draws, so every arm starts from the same weights),
 *       trained with the same data order and schedule (`mclip train --init INIT --workers 1`), as
 *         softmax            the official attention;
 *         sigmoid            σ(QKᵀ/√d − ln n)·V in both towers, no stabiliser;
 *         sigmoid+qk         with QK-norm (text layers and the MCi attention stage);
 *         sigmoid+hn+ls      with hybrid-norm (text and MCi) and LayerScale 1e-4 on the text attention residual
 *                            (the MCi attention blocks have their own γ₁, 1e-5 at init);
 *   (b) the shipped trained softmax model switched to sigmoid (`mclip convert --attention sigmoid`, plain, with
 *       QK-norm, with hybrid-norm + LayerScale), evaluated as switched, then fine-tuned by distillation from the
 *       softmax original (`mclip distill --sparsity 0 --teacher REF --init SWITCHED --stage-steps F`); a softmax
 *       control (the reference distilled from itself with the same recipe) separates the switch from the
 *       fine-tune;
 *   (c) latency on this CPU, in process, softmax and sigmoid alternating run by run (so drift hits both):
 *       one text transformer layer of the reference (tfjs on the bench's backend, and onnxruntime-node on a
 *       one-layer graph), batch 1 and 32; and the whole fused towers of the reference and its plain sigmoid
 *       switch (tfjs, and their verified ONNX exports in onnxruntime-node, one thread), batch 1.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/sigmoid.js [--work bench-out/sigmoid] [--steps 200] [--ft-steps 100]
 *       [--batch 32] [--warmup 20] [--lr 1e-3] [--seed 11] [--eval-sample 1000] [--scratch softmax,sigmoid,…]
 *       [--switch sigmoid,sigmoid+qk,sigmoid+hn+ls] [--finetune softmax,sigmoid,…] [--no-latency] [--latency-runs 30]
 *       [--reference models/mclip-emoji.safetensors --vocab models/vocab] [--data DIR] [--backend NAME]
 *
 * Evaluation: `mclip eval --split eval --sample N` (held-out Facebook renderings, evenly spaced; categories and
 * subcategories; cached next to each model). Curves: metrics.jsonl of the training runs and of the
 * distillation stages (stage-1/metrics.jsonl): loss and gradient norm before clipping at 1.0, every step.
 *
 * Resumable: a finished training run (RUN/model.safetensors), switched model, distilled stage or cached
 * evaluation is not redone; a stopped training run continues with --resume. RUN/arm.json records the run's
 * settings and a rerun with other ones into the same folder is refused. Timings in DIR/timings.json, logs in
 * DIR/logs/, the report in DIR/sigmoid.md.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import * as tf from '../src/base/tf.js';
import { initBackend } from '../src/base/backend/index.js';
import { loadModel, readCheckpointFile, saveModel } from '../src/base/model/checkpoint.js';
import { CLIP } from '../src/base/model/clip.js';
import type { ClipConfig } from '../src/base/model/configs.js';
import { TransformerEncoder } from '../src/base/layers/transformer-encoder.js';
import { GraphBuilder } from '../src/export/graph.js';
import { OnnxEmitter } from '../src/export/emit.js';
import { DataType, encodeModel, irVersionForOpset } from '../src/export/onnx-proto.js';
import { MIN_OPSET } from '../src/export/index.js';
import { cachedOnnx } from '../src/eval/onnx-cache.js';
import { loadOrt } from '../src/eval/engine-ort.js';
import { switchToSigmoid, withSigmoidAttention, type SigmoidOptions } from '../src/sigmoid-attn/index.js';
import { arg, evaluate, latestStep, mclip, prepareData, publish, runBench, Timings, type Scores, type Setup } from './common.js';

/** The attention variants: the kernel and its stabilisers. */
const VARIANTS = {
  softmax: null,
  sigmoid: {},
  'sigmoid+qk': { qkNorm: true },
  'sigmoid+hn+ls': { hybridNorm: true, layerScale: 1e-4 },
} as const satisfies Record<string, SigmoidOptions | null>;
type Variant = keyof typeof VARIANTS;
const NAMES = Object.keys(VARIANTS) as Variant[];

function variants(flag: string, def: string): Variant[] {
  const out = arg(flag, def)
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const v of out) if (!(NAMES as string[]).includes(v)) throw new Error(`--${flag}: expected variants among ${NAMES.join(', ')}, got '${v}'`);
  return out as Variant[];
}

/** The `mclip convert --attention sigmoid` flags of a variant. */
function convertFlags(v: Variant): string[] {
  const o: SigmoidOptions | null = VARIANTS[v];
  if (!o) return [];
  return ['--attention', 'sigmoid', ...(o.qkNorm ? ['--qk-norm'] : []), ...(o.hybridNorm ? ['--hybrid-norm'] : []), ...(o.layerScale !== undefined ? ['--layer-scale', String(o.layerScale)] : [])];
}

// ---- curves

interface MetricLine {
  step: number;
  loss: number;
  gradNorm: number;
}

function readMetrics(run: string): MetricLine[] {
  const p = join(run, 'metrics.jsonl');
  if (!existsSync(p)) return [];
  const byStep = new Map<number, MetricLine>();
  for (const l of readFileSync(p, 'utf8').split('\n')) {
    if (!l.trim()) continue;
    const j = JSON.parse(l) as { step?: number; loss?: number; gradNorm?: number | null };
    if (typeof j.step === 'number' && typeof j.loss === 'number') byStep.set(j.step, { step: j.step, loss: j.loss, gradNorm: typeof j.gradNorm === 'number' ? j.gradNorm : NaN });
  }
  return [...byStep.values()].sort((a, b) => a.step - b.step);
}

function quantileOf(v: number[], q: number): number {
  const s = v.filter(Number.isFinite).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const i = (s.length - 1) * q;
  const lo = Math.floor(i);
  return s[lo] + (s[Math.min(s.length - 1, lo + 1)] - s[lo]) * (i - lo);
}

const mean = (v: number[]) => (v.length ? v.reduce((a, b) => a + b, 0) / v.length : NaN);

/** Loss at the chosen steps (mean over ±2 steps, the batches are noisy) and the spread of the gradient norms. */
function curveSummary(m: MetricLine[], at: number[]) {
  const lossNear = (s: number) => mean(m.filter((x) => Math.abs(x.step - s) <= 2).map((x) => x.loss));
  const g = m.map((x) => x.gradNorm);
  const early = m.filter((x) => x.step <= Math.max(10, Math.round(m.length / 10))).map((x) => x.gradNorm);
  return {
    loss: at.map(lossNear),
    lastTenth: mean(m.slice(-Math.max(1, Math.round(m.length / 10))).map((x) => x.loss)),
    grad: { p10: quantileOf(g, 0.1), median: quantileOf(g, 0.5), p90: quantileOf(g, 0.9), max: Math.max(...g.filter(Number.isFinite)), earlyMax: Math.max(...early.filter(Number.isFinite)) },
    clipped: g.filter((x) => x > 1).length / Math.max(1, g.filter(Number.isFinite).length),
    nonFinite: m.filter((x) => !Number.isFinite(x.loss)).length,
  };
}

// ---- latency

interface LayerLatency {
  batch: number;
  tfjs: { softmax: number; sigmoid: number };
  ort: { softmax: number; sigmoid: number };
}

/** A one-layer ONNX graph: x [B, 77, C] → the layer → y. */
function layerOnnx(layer: TransformerEncoder, seq: number, width: number): Uint8Array {
  const g = new GraphBuilder(MIN_OPSET);
  const em = new OnnxEmitter(g);
  g.addInput('x', DataType.FLOAT, ['batch', seq, width]);
  const y = tf.tidy(() => em.module(layer, 'x', 'layer', 'tokens'));
  g.addOutput(y, 'y', DataType.FLOAT, ['batch', seq, width]);
  return encodeModel({ irVersion: irVersionForOpset(MIN_OPSET), opsetImport: [{ domain: '', version: MIN_OPSET }], producerName: 'mclip-bench', producerVersion: '0.1.0', graph: g.toGraph('layer'), metadataProps: [] });
}

function firstEncoder(m: CLIP): { path: string; layer: TransformerEncoder } {
  for (const [path, x] of m.textEncoder.namedModules('text_encoder.')) if (x instanceof TransformerEncoder) return { path, layer: x };
  throw new Error('the text tower has no transformer layer');
}

/**
 * Medians (ms) of `runs` rounds in which `a` and `b` run once each, alternately (after `warmup` rounds), so
 * that the drift of a shared machine hits both alike.
 */
async function interleaved(a: () => Promise<unknown>, b: () => Promise<unknown>, runs: number, warmup = 5): Promise<[number, number]> {
  const ta: number[] = [];
  const tb: number[] = [];
  for (let i = 0; i < warmup + runs; i++) {
    for (const [f, t] of i % 2 === 0 ? ([[a, ta], [b, tb]] as const) : ([[b, tb], [a, ta]] as const)) {
      const t0 = performance.now();
      await f();
      if (i >= warmup) t.push(performance.now() - t0);
    }
  }
  return [quantileOf(ta, 0.5), quantileOf(tb, 0.5)];
}

/** A tfjs forward as an async thunk: runs `fn`, waits for its output, frees it. */
const tfjsRun = (fn: () => tf.Tensor) => async () => {
  const y = fn();
  await y.data();
  y.dispose();
};

async function layerLatency(reference: string, runs: number, batches: number[]): Promise<{ path: string; rows: LayerLatency[] }> {
  const ort = await import('onnxruntime-node');
  const { model: soft } = await loadModel(reference);
  soft.eval();
  const sig = switchToSigmoid(soft);
  sig.eval();
  try {
    const a = firstEncoder(soft);
    const b = firstEncoder(sig);
    const seq = soft.cfg.text.contextLength;
    const width = soft.cfg.text.dim;
    const rows: LayerLatency[] = [];
    const sessions = await Promise.all(
      [a.layer, b.layer].map((l) => ort.InferenceSession.create(layerOnnx(l, seq, width), { intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all' })),
    );
    for (const batch of batches) {
      const data = Float32Array.from({ length: batch * seq * width }, (_, i) => Math.sin(i * 0.37));
      const x = tf.tensor3d(data, [batch, seq, width]);
      const feeds = { x: new ort.Tensor('float32', data, [batch, seq, width]) };
      const [tS, tG] = await interleaved(tfjsRun(() => a.layer.call(x)), tfjsRun(() => b.layer.call(x)), runs);
      const [oS, oG] = await interleaved(() => sessions[0]!.run(feeds), () => sessions[1]!.run(feeds), runs);
      rows.push({ batch, tfjs: { softmax: tS, sigmoid: tG }, ort: { softmax: oS, sigmoid: oG } });
      x.dispose();
    }
    await Promise.all(sessions.map((s) => s.release()));
    return { path: a.path, rows };
  } finally {
    soft.dispose();
    sig.dispose();
  }
}

interface TowerLatencyRow {
  tfjs: { image: number; text: number };
  ort: { image: number; text: number };
}

/**
 * Batch-1 latency of the two models' towers (fused), softmax and sigmoid interleaved run by run: tfjs in
 * process, and each model's verified ONNX export (`cachedOnnx`, cached under `cacheRoot`) in onnxruntime-node
 * with one thread. A fixed image and a 12-token caption.
 */
async function towerLatency(files: { softmax: string; sigmoid: string }, runs: number, cacheRoot: string): Promise<{ softmax: TowerLatencyRow; sigmoid: TowerLatencyRow }> {
  const ort = await loadOrt();
  const loaded = await Promise.all([files.softmax, files.sigmoid].map(async (f) => ({ file: f, model: (await loadModel(f, { fused: true })).model })));
  try {
    const [soft, sig] = loaded;
    const cfg = soft!.model.cfg;
    const size = cfg.image.imageSize;
    const ctx = cfg.text.contextLength;
    const px = Float32Array.from({ length: 3 * size * size }, (_, i) => Math.sin(i * 0.11));
    const ids = new Int32Array(ctx);
    ids[0] = cfg.text.vocabSize - 2;
    for (let j = 1; j < 11; j++) ids[j] = 1 + ((j * 37) % (cfg.text.vocabSize - 3));
    ids[11] = cfg.text.vocabSize - 1;
    const image = tf.tensor4d(px, [1, 3, size, size]).transpose([0, 2, 3, 1]) as tf.Tensor4D;
    const tokens = tf.tensor2d(ids, [1, ctx], 'int32');
    const sess = await Promise.all(
      loaded.map(async ({ file, model }) => {
        const e = await cachedOnnx(model, file, { root: cacheRoot });
        const o = { intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential' as const, graphOptimizationLevel: 'all' as const };
        return { image: await ort.InferenceSession.create(e.image, o), text: await ort.InferenceSession.create(e.text, o) };
      }),
    );
    const feedImage = { image: new ort.Tensor('float32', px, [1, 3, size, size]) };
    const feedText = { tokens: new ort.Tensor('int64', BigInt64Array.from(ids, (v) => BigInt(v)), [1, ctx]) };
    const [ti0, ti1] = await interleaved(tfjsRun(() => soft!.model.encodeImage(image)), tfjsRun(() => sig!.model.encodeImage(image)), runs);
    const [tt0, tt1] = await interleaved(tfjsRun(() => soft!.model.encodeText(tokens)), tfjsRun(() => sig!.model.encodeText(tokens)), runs);
    const [oi0, oi1] = await interleaved(() => sess[0]!.image.run(feedImage), () => sess[1]!.image.run(feedImage), runs);
    const [ot0, ot1] = await interleaved(() => sess[0]!.text.run(feedText), () => sess[1]!.text.run(feedText), runs);
    tf.dispose([image, tokens]);
    for (const s of sess) await Promise.all([s.image.release(), s.text.release()]);
    return {
      softmax: { tfjs: { image: ti0, text: tt0 }, ort: { image: oi0, text: ot0 } },
      sigmoid: { tfjs: { image: ti1, text: tt1 }, ort: { image: oi1, text: ot1 } },
    };
  } finally {
    for (const l of loaded) l.model.dispose();
  }
}

// ---- main

async function main(): Promise<void> {
  const work = resolve(arg('work', 'bench-out/sigmoid'));
  const steps = Number(arg('steps', '200'));
  const ftSteps = Number(arg('ft-steps', '100'));
  const batch = arg('batch', '32');
  const warmup = arg('warmup', '20');
  const lr = arg('lr', '1e-3');
  const seed = Number(arg('seed', '11'));
  const reference = resolve(arg('reference', join('models', 'mclip-emoji.safetensors')));
  const scratchArms = variants('scratch', NAMES.join(','));
  const switchArms = variants('switch', 'sigmoid,sigmoid+qk,sigmoid+hn+ls');
  const ftArms = variants('finetune', 'softmax,sigmoid,sigmoid+qk');
  const latencyOn = !process.argv.includes('--no-latency');
  const latencyRuns = Number(arg('latency-runs', '30'));
  const backend = arg('backend', '');
  const be = backend ? ['--backend', backend] : [];
  const setup: Setup = { work, data: resolve(arg('data', join(work, 'emoji'))), vocab: resolve(arg('vocab', join('models', 'vocab'))), evalSample: Number(arg('eval-sample', '1000')) };
  const { data, vocab } = setup;
  if (!(Number.isInteger(steps) && steps >= 2)) throw new Error(`--steps: expected an integer ≥ 2, got ${arg('steps', '')}`);
  if (!(Number.isInteger(ftSteps) && ftSteps >= 1)) throw new Error(`--ft-steps: expected an integer ≥ 1, got ${arg('ft-steps', '')}`);
  if (!existsSync(reference)) throw new Error(`--reference ${reference}: not found`);

  mkdirSync(work, { recursive: true });
  const logs = join(work, 'logs');
  const timings = new Timings(join(work, 'timings.json'));
  const wallStart = Date.now();
  await timings.stage('data', existsSync(join(data, 'manifest.json')) && existsSync(join(vocab, 'clip-vocab.json')), () => prepareData(setup, logs));
  await initBackend({ backend: backend || undefined, gradients: false, quiet: true });
  const refConfig: ClipConfig | null = (await readCheckpointFile(reference)).config;
  if (!refConfig) throw new Error(`${reference}: no config in its header`);

  const evalOf = async (model: string, dir: string, log: string, key: string): Promise<Scores> => {
    const cache = join(dir, 'evals', 'final');
    await timings.stage(`${key}: eval`, existsSync(`${cache}-category.json`) && existsSync(`${cache}-subcategory.json`), () => evaluate(model, cache, setup, log));
    return evaluate(model, cache, setup, log);
  };
  const settingsGuard = (dir: string, settings: object) => {
    const text = JSON.stringify(settings, null, 2) + '\n';
    const file = join(dir, 'arm.json');
    if (existsSync(file) && readFileSync(file, 'utf8') !== text) throw new Error(`${file}: this folder was made with other settings (remove ${dir} or use another --work)`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(file, text);
  };

  // ---- (a) from scratch
  const scratch: Array<{ v: Variant; run: string; scores?: Scores; error?: string }> = [];
  for (const v of scratchArms) {
    const dir = join(work, 'scratch', v.replace(/\+/g, '_'));
    const run = join(dir, 'run');
    const log = join(logs, `scratch-${v}.log`);
    const init = join(dir, 'init.safetensors');
    const trainArgs = ['train', ...be, '--data', data, '--vocab', vocab, '--init', init, '--out', run, '--steps', String(steps), '--batch', batch, '--warmup', warmup, '--lr', lr, '--seed', String(seed), '--workers', '1', '--save-every', '50', '--quiet'];
    try {
      settingsGuard(dir, { variant: v, options: VARIANTS[v], initSeed: seed, args: trainArgs.filter((a) => a !== backend && a !== '--backend') });
      await timings.stage(`scratch ${v}: init`, existsSync(init), async () => {
        const o: SigmoidOptions | null = VARIANTS[v];
        const m = new CLIP(o ? withSigmoidAttention(refConfig, o) : refConfig, { seed });
        try {
          saveModel(m, `${init}.tmp`, { 'mclip.note': `bench/sigmoid: random init (seed ${seed}), ${v}` });
        } finally {
          m.dispose();
        }
        renameSync(`${init}.tmp`, init);
      });
      const final = join(run, 'model.safetensors');
      await timings.stage(`scratch ${v}: train ${steps} steps`, existsSync(final), () => mclip([...trainArgs, latestStep(run) > 0 ? '--resume' : '--force'], log));
      scratch.push({ v, run, scores: await evalOf(final, dir, log, `scratch ${v}`) });
    } catch (e) {
      scratch.push({ v, run, error: e instanceof Error ? e.message : String(e) });
      console.error(`sigmoid: scratch ${v} failed: ${scratch[scratch.length - 1].error}`);
    }
  }

  // ---- (b) the trained model switched, before and after a distillation fine-tune
  const refDir = join(work, 'reference');
  const refScores = await evalOf(reference, refDir, join(logs, 'reference.log'), 'reference');
  const switched = new Map<Variant, string>([['softmax', reference]]);
  const before: Array<{ v: Variant; scores?: Scores; error?: string }> = [];
  for (const v of switchArms) {
    if (v === 'softmax') continue;
    const dir = join(work, 'switch', v.replace(/\+/g, '_'));
    const file = join(dir, 'model.safetensors');
    const log = join(logs, `switch-${v}.log`);
    try {
      mkdirSync(dir, { recursive: true });
      await timings.stage(`switch ${v}: convert`, existsSync(file), async () => {
        await mclip(['convert', ...be, reference, ...convertFlags(v), '--out', `${file}.tmp.safetensors`, '--quiet'], log);
        renameSync(`${file}.tmp.safetensors`, file);
      });
      switched.set(v, file);
      before.push({ v, scores: await evalOf(file, dir, log, `switch ${v}`) });
    } catch (e) {
      before.push({ v, error: e instanceof Error ? e.message : String(e) });
    }
  }
  const after: Array<{ v: Variant; dir: string; log: string; scores?: Scores; error?: string }> = [];
  for (const v of ftArms) {
    const dir = join(work, 'finetune', v.replace(/\+/g, '_'));
    const log = join(logs, `finetune-${v}.log`);
    const init = switched.get(v);
    const final = join(dir, 'stage-1', 'model.safetensors');
    try {
      if (!init) throw new Error(`no switched model for ${v} (add it to --switch)`);
      const distillArgs = ['distill', ...be, '--teacher', reference, '--init', init, '--data', data, '--vocab', vocab, '--sparsity', '0', '--stage-steps', String(ftSteps), '--batch', batch, '--seed', String(seed), '--out', dir];
      settingsGuard(dir, { variant: v, args: distillArgs.filter((a) => a !== backend && a !== '--backend') });
      await timings.stage(`finetune ${v}: distill ${ftSteps} steps`, existsSync(final), () => mclip(distillArgs, log));
      after.push({ v, dir, log, scores: await evalOf(final, dir, log, `finetune ${v}`) });
    } catch (e) {
      after.push({ v, dir, log, error: e instanceof Error ? e.message : String(e) });
    }
  }

  // ---- (c) latency, in process, softmax and sigmoid interleaved run by run: one text layer, then the towers
  let layer: { path: string; rows: LayerLatency[] } | undefined;
  const towers = new Map<string, TowerLatencyRow>();
  if (latencyOn) {
    const lf = join(work, 'latency', 'layer.json');
    await timings.stage('latency: one text layer', existsSync(lf), async () => {
      mkdirSync(join(work, 'latency'), { recursive: true });
      writeFileSync(lf, JSON.stringify(await layerLatency(reference, latencyRuns, [1, 32]), null, 2) + '\n');
    });
    layer = JSON.parse(readFileSync(lf, 'utf8')) as { path: string; rows: LayerLatency[] };
    const sigFile = switched.get('sigmoid');
    if (sigFile) {
      const tf2 = join(work, 'latency', 'towers.json');
      await timings.stage('latency: towers', existsSync(tf2), async () => {
        writeFileSync(tf2, JSON.stringify(await towerLatency({ softmax: reference, sigmoid: sigFile }, latencyRuns, join(work, 'latency', 'onnx')), null, 2) + '\n');
      });
      const t = JSON.parse(readFileSync(tf2, 'utf8')) as { softmax: TowerLatencyRow; sigmoid: TowerLatencyRow };
      towers.set('softmax', t.softmax);
      towers.set('sigmoid', t.sigmoid);
    }
  }

  // ---- the report
  const pct = (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? '—' : (100 * v).toFixed(1));
  const f = (v: number | undefined, d = 3) => (v === undefined || !Number.isFinite(v) ? '—' : v.toFixed(d));
  const scoreCells = (s: Scores | undefined) => (s ? [pct(s.top1), pct(s.top5), pct(s.subTop1), pct(s.i2t), pct(s.t2i), pct(s.i2t10), pct(s.t2i10)] : Array<string>(7).fill('—'));
  const scoreHead = 'zero-shot top-1 % | top-5 % | subcat. top-1 % | R@1 i→t % | R@1 t→i % | R@10 i→t % | R@10 t→i %';
  const at = [1, 25, 50, 100, 150, steps].filter((s, i, a) => s <= steps && a.indexOf(s) === i);
  const tableA = [
    `| arm | ${at.map((s) => `loss @${s}`).join(' | ')} | loss, last 10 % | grad-norm p10 / median / p90 | max (first 10 %) | steps clipped (> 1) | ${scoreHead} | train s |`,
    `|---|${at.map(() => '---|').join('')}---|---|---|---|${'---|'.repeat(7)}---|`,
  ];
  const times = new Map(timings.entries());
  for (const r of scratch) {
    const m = readMetrics(r.run);
    if (!m.length || r.error) {
      tableA.push(`| ${r.v} | failed: ${(r.error ?? 'no metrics').replace(/\|/g, '/').slice(0, 200)} |`);
      continue;
    }
    const c = curveSummary(m, at);
    const nf = c.nonFinite ? ` (${c.nonFinite} non-finite)` : '';
    tableA.push(
      `| ${r.v} | ${c.loss.map((x) => f(x)).join(' | ')} | ${f(c.lastTenth)}${nf} | ${f(c.grad.p10, 2)} / ${f(c.grad.median, 2)} / ${f(c.grad.p90, 2)} | ${f(c.grad.max, 2)} (${f(c.grad.earlyMax, 2)}) | ${(100 * c.clipped).toFixed(0)} % | ${scoreCells(r.scores).join(' | ')} | ${f(times.get(`scratch ${r.v}: train ${steps} steps`), 0)} |`,
    );
  }
  const tableB = [`| model | fine-tune | distillation loss, first 10 % → last 10 % | grad-norm p10 / median / p90 | max (first 10 %) | steps clipped (> 1) | ${scoreHead} |`, `|---|---|---|---|---|---|${'---|'.repeat(7)}`];
  tableB.push(`| reference (softmax, shipped) | — | — | — | — | — | ${scoreCells(refScores).join(' | ')} |`);
  for (const r of before) tableB.push(`| switched: ${r.v} | none | — | — | — | — | ${r.error ? `failed: ${r.error.replace(/\|/g, '/').slice(0, 200)}` : scoreCells(r.scores).join(' | ')} |`);
  const ftCurve = (r: (typeof after)[number]) => readMetrics(join(r.dir, 'stage-1'));
  for (const r of after) {
    const m = ftCurve(r);
    const label = r.v === 'softmax' ? 'reference, self-distilled (control)' : `switched: ${r.v}`;
    const tenth = Math.max(1, Math.round(m.length / 10));
    const c = m.length ? curveSummary(m, []) : null;
    const curveCells = c
      ? [`${f(mean(m.slice(0, tenth).map((x) => x.loss)))} → ${f(c.lastTenth)}${c.nonFinite ? ` (${c.nonFinite} non-finite)` : ''}`, `${f(c.grad.p10, 2)} / ${f(c.grad.median, 2)} / ${f(c.grad.p90, 2)}`, `${f(c.grad.max, 2)} (${f(c.grad.earlyMax, 2)})`, `${(100 * c.clipped).toFixed(0)} %`]
      : ['—', '—', '—', '—'];
    tableB.push(`| ${label} | distill ${ftSteps} steps | ${curveCells.join(' | ')} | ${r.error ? `failed: ${r.error.replace(/\|/g, '/').slice(0, 200)}` : scoreCells(r.scores).join(' | ')} |`);
  }
  // the loss at every tenth of the fine-tune (mean over ±2 steps)
  const tenths = Array.from({ length: 11 }, (_, i) => Math.max(1, Math.round((i * ftSteps) / 10)));
  const curvesB = after.map((r) => {
    const m = ftCurve(r);
    return `- ${r.v}: ${m.length ? curveSummary(m, tenths).loss.map((x, i) => `${tenths[i]}: ${f(x)}`).join(', ') : '—'}`;
  });
  const ratio = (a: number, b: number) => `${b > a ? '+' : '−'}${Math.abs((100 * (b - a)) / a).toFixed(0)} %`;
  const tableC = ['| what | engine | batch | softmax ms | sigmoid ms | sigmoid vs softmax |', '|---|---|---|---|---|---|'];
  for (const r of layer?.rows ?? []) {
    tableC.push(`| one text layer (\`${layer?.path}\`, ${refConfig.text.contextLength} tokens) | tfjs (${tf.getBackend()}) | ${r.batch} | ${f(r.tfjs.softmax, 2)} | ${f(r.tfjs.sigmoid, 2)} | ${ratio(r.tfjs.softmax, r.tfjs.sigmoid)} |`);
    tableC.push(`| one text layer | ORT (1 thread) | ${r.batch} | ${f(r.ort.softmax, 2)} | ${f(r.ort.sigmoid, 2)} | ${ratio(r.ort.softmax, r.ort.sigmoid)} |`);
  }
  const ts = towers.get('softmax');
  const tg = towers.get('sigmoid');
  if (ts && tg) {
    for (const tower of ['text', 'image'] as const)
      for (const eng of ['tfjs', 'ort'] as const) {
        const a = ts[eng][tower];
        const b = tg[eng][tower];
        if (a !== undefined && b !== undefined) tableC.push(`| ${tower} tower (fused) | ${eng === 'ort' ? 'ORT' : 'tfjs'} | 1 | ${f(a, 2)} | ${f(b, 2)} | ${ratio(a, b)} |`);
      }
  }
  const timeRows = ['| stage | wall time (s) |', '|---|---|', ...timings.entries().map(([k, v]) => `| ${k} | ${v.toFixed(0)} |`)];
  const md = [
    '# Sigmoid vs softmax attention on the emoji data (issue 13)',
    '',
    `Model: ${refConfig.name} (the reference model's config: MCi ${refConfig.image.kind === 'mci' ? refConfig.image.embedDims.join('/') : ''} at ${refConfig.image.imageSize} px, attention stage of 2×2 tokens; \`${refConfig.text.modelName}\` text tower of width ${refConfig.text.dim}, ${refConfig.text.nTransformerLayers} transformer layers, ${refConfig.text.nHeads} heads, ${refConfig.text.contextLength} tokens). Data: ${data}; evaluation: ${setup.evalSample} held-out Facebook renderings, evenly spaced; zero-shot over the 10 categories (top-1, top-5) and the subcategories (top-1); retrieval among the same ${setup.evalSample}.`,
    '',
    `## (a) From scratch, ${steps} steps`,
    '',
    `Every arm: the same random init (seed ${seed}), \`mclip train --init INIT --steps ${steps} --batch ${batch} --warmup ${warmup} --lr ${lr} --seed ${seed} --workers 1\` (AdamW, cosine, gradient clipping at 1.0). Loss: the training loss (real + sampled caption, ≈ 6.93 at chance), mean over ±2 steps. Gradient norm: global L2 norm before clipping, over all steps.`,
    '',
    ...tableA,
    '',
    `## (b) The shipped softmax model switched to sigmoid, fine-tuned by distillation (${ftSteps} steps)`,
    '',
    `\`mclip convert ${reference} --attention sigmoid [--qk-norm | --hybrid-norm --layer-scale 1e-4]\`, then \`mclip distill --teacher ${reference} --init SWITCHED --sparsity 0 --stage-steps ${ftSteps} --batch ${batch}\` (affinity mimicking, lr 1e-4, live teacher in onnxruntime).`,
    '',
    ...tableB,
    '',
    'Distillation loss along the fine-tunes (`stage-1/metrics.jsonl`; step: loss, mean over ±2 steps):',
    '',
    ...curvesB,
    '',
    '## (c) Latency on this CPU (median)',
    '',
    ...tableC,
    '',
    'Wall time of each stage (this run and earlier resumed runs):',
    '',
    ...timeRows,
    '',
    `This invocation: ${((Date.now() - wallStart) / 1000).toFixed(0)} s.`,
  ].join('\n');
  publish(join(work, 'sigmoid.md'), md);
  const failed = [...scratch, ...before, ...after].filter((r) => r.error);
  if (failed.length) {
    console.error(`sigmoid: ${failed.length} arm(s) failed (see ${logs}); rerun to retry them`);
    process.exitCode = 1;
  }
}

runBench(main);
