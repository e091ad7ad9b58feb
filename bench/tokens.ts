/**
 * bench/tokens — text-token reduction (methods.md §4, issue 12): what each padding policy and each
 * pruning / merging setting costs in accuracy and buys in text-tower latency, before and after a short
 * fine-tune with the reducers active.
 *
 *   npm run build && node dist/bench/tokens.js [--work bench-out/tokens] [--steps 150] [--sample 1000] [--runs 20] [--latency-only]
 *
 * `--latency-only` builds the data it needs and re-measures part 1 alone (WORK/latency.md).
 *
 * 1. **Latency** of the text tower (tfjs on the running backend, and the ONNX export in onnxruntime-node, one
 *    intra-op thread), batch 1 (typical prompts "a photo of a NAME.", cycled) and batch 80, median of --runs:
 *    - a causal tower the size of MobileCLIP-B's (12 × 512, causal; random weights — none can be downloaded
 *      here, and latency and exactness do not depend on them): `as-trained` (77 slots) against `truncate`,
 *      with the largest relative difference of the features (tfjs and ORT);
 *    - the shipped emoji model (`models/mclip-emoji.safetensors`, a non-causal `mct` tower) under every
 *      setting of part 2, on typical prompts and on long captions.
 * 2. **Accuracy** (`mclip eval --engine tfjs` with the token flags, --sample held-out Facebook renderings):
 *    zero-shot top-1/top-5 over the categories and R@1 both ways, on the emoji captions (a few tokens) and on
 *    long captions (each sample's caption and its alternative captions joined, ≤ 77 tokens), for every
 *    padding policy and several keep / merge settings.
 * 3. **Fine-tune** (`mclip distill --sparsity 0`, the shipped model as teacher, --steps on the long-caption
 *    train split): once unreduced (the control) and once with the reducers active; both evaluated as in 2.
 *
 * Every stage is skipped when its output exists (resumable). Outputs: WORK/tokens.md (the tables),
 * WORK/latency.json, the eval reports in WORK/eval and the fine-tunes in WORK/ft-NAME.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '../src/base/tf.js';
import { initBackend } from '../src/base/backend/index.js';
import { CLIP } from '../src/base/model/clip.js';
import { getConfig } from '../src/base/model/configs.js';
import { loadModel } from '../src/base/model/checkpoint.js';
import { reparameterize } from '../src/base/model/reparameterize.js';
import { ClipTokenizer } from '../src/base/tokenizer/index.js';
import { DatasetBuilder } from '../src/base/data/build.js';
import { readImageTextDataset } from '../src/base/data/sample.js';
import { buildOnnx, truncateTokenRows } from '../src/export/index.js';
import { loadOrt } from '../src/eval/engine-ort.js';
import { measuredTextMacs } from '../src/eval/cost.js';
import { installTokenSettings, parseTokenArgs, textLayerCount, type TokenArgs } from '../src/cli/token-options.js';
import type { EvalReport } from '../src/eval/report.js';
import { arg, mclip, publish, ROOT, runBench, Timings } from './common.js';

const WORK = arg('work', join(ROOT, 'bench-out', 'tokens'));
const STEPS = Number(arg('steps', '150'));
const SAMPLE = Number(arg('sample', '1000'));
const RUNS = Number(arg('runs', '20'));
/** Timed runs at batch 1 and at batch 80 (fewer: a B-size tower takes seconds per batch of 80 in tfjs). */
const runsFor = (batch: number) => (batch === 1 ? RUNS : Math.max(3, Math.round(RUNS / 6)));
/** Warm-up runs before timing (one at batch 80). */
const warmupFor = (batch: number) => (batch === 1 ? 3 : 1);
const MODEL = join(ROOT, 'models', 'mclip-emoji.safetensors');
const VOCAB = join(ROOT, 'models', 'vocab');
const DATA = arg('data', join(ROOT, 'data', 'emoji'));
const LONG = join(WORK, 'emoji-long');

/** The settings compared (mclip eval's token flags); the reduced fine-tune uses REDUCED. */
const SETTINGS: Array<{ name: string; flags: string[] }> = [
  { name: 'as-trained', flags: [] },
  { name: 'truncate', flags: ['--text-padding', 'truncate'] },
  { name: 'pads-first', flags: ['--text-padding', 'pads-first'] },
  { name: 'merge-pads', flags: ['--text-padding', 'merge-pads'] },
  { name: 'truncate + prune L1 keep 0.7', flags: ['--text-padding', 'truncate', '--prune-layers', '1', '--keep', '0.7'] },
  { name: 'truncate + prune L1 keep 0.5', flags: ['--text-padding', 'truncate', '--prune-layers', '1', '--keep', '0.5'] },
  { name: 'truncate + merge L1,2 r 4', flags: ['--text-padding', 'truncate', '--merge-layers', '1,2', '--merge', '4'] },
  { name: 'truncate + merge L1,2 r 8', flags: ['--text-padding', 'truncate', '--merge-layers', '1,2', '--merge', '8'] },
  { name: 'truncate + prune L1 0.5 + merge L2 r 8', flags: ['--text-padding', 'truncate', '--prune-layers', '1', '--keep', '0.5', '--merge-layers', '2', '--merge', '8'] },
  // the same reducers with the last RepMixer block on the short sequence (src/prune/conv-blocks.ts) instead of the restored grid
  { name: 'truncate + prune L1 0.5 + merge L2 r 8, compact', flags: ['--text-padding', 'truncate', '--prune-layers', '1', '--keep', '0.5', '--merge-layers', '2', '--merge', '8', '--conv-blocks', 'compact'] },
];
const REDUCED = SETTINGS.find((st) => st.name === 'truncate + prune L1 0.5 + merge L2 r 8')!;
/** The causal B-size tower (12 layers): truncate, and pruning + merging in its early-to-middle layers. */
const CAUSAL_SETTINGS: Array<{ name: string; flags: string[] }> = [
  { name: 'as-trained', flags: [] },
  { name: 'truncate', flags: ['--text-padding', 'truncate'] },
  { name: 'truncate + prune L2 0.5 + merge L4,6 r 8', flags: ['--text-padding', 'truncate', '--prune-layers', '2', '--keep', '0.5', '--merge-layers', '4,6', '--merge', '8'] },
];

/** A copy of the emoji data whose caption is the sample's caption and alternative captions joined. */
async function buildLongCaptions(): Promise<void> {
  if (existsSync(join(LONG, 'manifest.json'))) return;
  const manifest = JSON.parse(readFileSync(join(DATA, 'manifest.json'), 'utf8')) as { image: { width: number; height: number } };
  const b = new DatasetBuilder(LONG, { splits: ['train', 'eval'], force: true });
  try {
    for (const split of ['train', 'eval']) {
      for await (const s of readImageTextDataset(DATA, split)) {
        const long = [s.caption, ...s.captions].join(', ');
        await b.add(split, s.key, { image: s.image, caption: long, captions: [s.caption, ...s.captions], labels: s.labels, source: s.source });
      }
    }
    await b.close({ name: 'emoji-long', image: manifest.image, source: { from: DATA, caption: 'caption and alternative captions joined with ", "' } });
  } catch (e) {
    b.abort();
    throw e;
  }
}

/** Caption sets for latency: the typical prompts (cycled at batch 1) and the long captions. */
async function captionSets(tok: ClipTokenizer): Promise<{ typical: string[]; long: string[]; lengths: { typical: number; long: number } }> {
  const typical: string[] = [];
  const long: string[] = [];
  for await (const s of readImageTextDataset(LONG, 'eval')) {
    if (typical.length < 80) {
      typical.push(`a photo of a ${s.captions[0] ?? s.caption}.`);
      long.push(s.caption);
    } else break;
  }
  const mean = (xs: string[]) => xs.reduce((a, t) => a + Math.min(77, tok.encode(t).length + 2), 0) / xs.length;
  return { typical, long, lengths: { typical: mean(typical), long: mean(long) } };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** Median ms of the text tower in tfjs over RUNS (after 3 warm-ups); batch 1 cycles over the rows. */
async function tfjsTextMs(model: CLIP, ids: Int32Array, n: number, batch: number): Promise<number> {
  const ctx = 77;
  const rows = Array.from({ length: Math.max(1, Math.floor(n / batch)) }, (_, i) => tf.tensor2d(ids.slice(i * batch * ctx, (i + 1) * batch * ctx), [batch, ctx], 'int32'));
  const ms: number[] = [];
  try {
    for (let r = 0; r < runsFor(batch) + warmupFor(batch); r++) {
      const x = rows[r % rows.length]!;
      const t0 = performance.now();
      const y = model.encodeText(x);
      await y.data();
      y.dispose();
      if (r >= warmupFor(batch)) ms.push(performance.now() - t0);
    }
  } finally {
    tf.dispose(rows);
  }
  return median(ms);
}

type Session = Awaited<ReturnType<Awaited<ReturnType<typeof loadOrt>>['InferenceSession']['create']>>;

/** Median ms of an ORT text session; `truncate`: each batch cut to its longest row first (as a user would). */
async function ortTextMs(session: Session, ort: Awaited<ReturnType<typeof loadOrt>>, ids: Int32Array, n: number, batch: number, truncate: boolean): Promise<number> {
  const ctx = 77;
  const feeds = Array.from({ length: Math.max(1, Math.floor(n / batch)) }, (_, i) => {
    const rows = ids.slice(i * batch * ctx, (i + 1) * batch * ctx);
    const cut = truncate ? truncateTokenRows(rows, batch, ctx) : { ids: rows, length: ctx };
    return new ort.Tensor('int32', cut.ids, [batch, cut.length]);
  });
  const ms: number[] = [];
  for (let r = 0; r < runsFor(batch) + warmupFor(batch); r++) {
    const t0 = performance.now();
    await session.run({ tokens: feeds[r % feeds.length]! });
    if (r >= warmupFor(batch)) ms.push(performance.now() - t0);
  }
  return median(ms);
}

async function ortFeatures(session: Session, ort: Awaited<ReturnType<typeof loadOrt>>, ids: Int32Array, n: number, truncate: boolean): Promise<Float32Array> {
  const cut = truncate ? truncateTokenRows(ids, n, 77) : { ids, length: 77 };
  const out = await session.run({ tokens: new ort.Tensor('int32', cut.ids, [n, cut.length]) });
  return out.text_features!.data as Float32Array;
}

function relErr(a: Float32Array, b: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - b[i]!));
    den = Math.max(den, Math.abs(a[i]!));
  }
  return num / den;
}

interface LatencyRow {
  model: string;
  setting: string;
  captions: string;
  tfjs: { b1: number; b80: number };
  ort?: { b1: number; b80: number };
  /** mean text MACs per caption (measured with the reducers in place, over the first 20 captions) */
  macs?: number;
  /** max|Δ|/max|ref| of the features against as-trained (tfjs, ORT) */
  diff?: { tfjs: number; ort?: number };
}

async function latency(): Promise<{ rows: LatencyRow[]; lengths: { typical: number; long: number } }> {
  const file = join(WORK, 'latency.json');
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')) as { rows: LatencyRow[]; lengths: { typical: number; long: number } };
  const backend = await initBackend({ quiet: true, gradients: false });
  console.error(`bench/tokens: latency on tfjs ${backend.name}`);
  const ort = await loadOrt();
  const opts = { intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: 'all' as const };
  const tok = ClipTokenizer.fromDir(VOCAB);
  const sets = await captionSets(tok);
  const rows: LatencyRow[] = [];

  /**
   * One tower's rows: every setting on both caption sets (`skip` leaves some out), tfjs with the reducers as
   * hooks, ORT for `as-trained` and `truncate` (their exports), the features' Δ against as-trained in tfjs and,
   * with `ortDiff`, in ORT.
   */
  const towerRows = async (model: CLIP, label: string, settings: typeof SETTINGS, o: { ortDiff: boolean; skip?: (st: { flags: string[] }, captions: 'typical' | 'long') => boolean }) => {
    reparameterize(model);
    model.eval();
    const sessions = {
      full: await ort.InferenceSession.create(buildOnnx(model, { tower: 'text', tokensDtype: 'int32' }), opts),
      truncate: await ort.InferenceSession.create(buildOnnx(model, { tower: 'text', tokensDtype: 'int32', textPadding: 'truncate' }), opts),
    };
    for (const captions of ['typical', 'long'] as const) {
      const ids = tok.tokenize(sets[captions], 77);
      const full = await tfjsFeatures(model, ids);
      const ortFull = o.ortDiff ? await ortFeatures(sessions.full, ort, ids, 80, false) : null;
      for (const st of settings) {
        if (o.skip?.(st, captions)) continue;
        const h = st.flags.length ? installTokenSettings(model, parseTokenArgs(flagsToArgs(st.flags), textLayerCount(model))) : null;
        try {
          const feats = await tfjsFeatures(model, ids);
          const row: LatencyRow = {
            model: label, setting: st.name, captions,
            tfjs: { b1: await tfjsTextMs(model, ids, 80, 1), b80: await tfjsTextMs(model, ids, 80, 80) },
            macs: measuredTextMacs(model, ids.slice(0, 20 * 77), 77),
            diff: { tfjs: relErr(full, feats) },
          };
          if (st.name === 'as-trained' || st.name === 'truncate') {
            const trunc = st.name === 'truncate';
            const s = trunc ? sessions.truncate : sessions.full;
            row.ort = { b1: await ortTextMs(s, ort, ids, 80, 1, trunc), b80: await ortTextMs(s, ort, ids, 80, 80, trunc) };
            if (ortFull) row.diff!.ort = relErr(ortFull, await ortFeatures(s, ort, ids, 80, trunc));
          }
          rows.push(row);
          console.error(`  ${JSON.stringify(row)}`);
        } finally {
          h?.remove();
        }
      }
    }
    model.dispose();
  };

  // The causal tower: MobileCLIP-B's text transformer (random weights; the CLIP vocabulary size; the emoji
  // vocabulary's ids, < 4096, are valid ids of its 49408-token table). Reducers: on the long captions only.
  const cfg = getConfig('mobileclip_tiny_base');
  cfg.name = 'causal_b_text';
  cfg.text = { ...getConfig('mobileclip_b').text };
  cfg.embedDim = 512;
  await towerRows(new CLIP(cfg, { seed: 0 }), 'causal 12×512 (B-size, random)', CAUSAL_SETTINGS, { ortDiff: true, skip: (st, captions) => captions === 'typical' && st.flags.length > 2 });
  // The shipped emoji model under every setting.
  await towerRows((await loadModel(MODEL, { fused: true })).model, 'emoji mct (shipped)', SETTINGS, { ortDiff: false });
  const out = { rows, lengths: sets.lengths };
  writeFileSync(file, JSON.stringify(out, null, 2) + '\n');
  return out;
}

/** Text features of 80 rows in tfjs (with whatever hooks are installed), row-major. */
async function tfjsFeatures(model: CLIP, ids: Int32Array): Promise<Float32Array> {
  const x = tf.tensor2d(ids, [ids.length / 77, 77], 'int32');
  const y = model.encodeText(x);
  const d = (await y.data()) as Float32Array;
  tf.dispose([x, y]);
  return d;
}

function flagsToArgs(flags: string[]): TokenArgs {
  const get = (f: string) => {
    const i = flags.indexOf(f);
    return i >= 0 ? flags[i + 1] : undefined;
  };
  const num = (f: string) => (get(f) === undefined ? undefined : Number(get(f)));
  return { textPadding: get('--text-padding'), pruneLayers: get('--prune-layers'), keep: num('--keep'), mergeLayers: get('--merge-layers'), merge: num('--merge'), convBlocks: get('--conv-blocks') };
}

interface Scores {
  top1: number;
  top5: number;
  i2t: number;
  t2i: number;
  textMacs: number;
}

async function evalScores(model: string, data: string, flags: string[], cache: string): Promise<Scores> {
  const file = join(WORK, 'eval', `${cache}.json`);
  mkdirSync(join(WORK, 'eval'), { recursive: true });
  if (!existsSync(file)) {
    await mclip(['eval', '--model', model, '--data', data, '--split', 'eval', '--vocab', VOCAB, '--sample', String(SAMPLE), '--engine', 'tfjs', '--no-latency', '--json', file, '--quiet', ...flags], join(WORK, 'logs', 'eval.log'));
  }
  const r = JSON.parse(readFileSync(file, 'utf8')) as EvalReport;
  const row = r.rows[0]!;
  if (!row.zeroShot || !row.retrieval) throw new Error(`${file}: no zero-shot or retrieval scores`);
  // the work done per caption: measured with the reducers for a reduced run (textReduced, or textPresent in a
  // report written before that field existed), the full context otherwise
  const spent = flags.length ? (row.macs.textReduced ?? row.macs.textPresent ?? row.macs.text) : row.macs.text;
  return { top1: row.zeroShot.top1, top5: row.zeroShot.top5, i2t: row.retrieval.i2t.r1, t2i: row.retrieval.t2i.r1, textMacs: spent };
}

async function fineTune(name: string, flags: string[]): Promise<string> {
  const out = join(WORK, `ft-${name}`);
  const model = join(out, 'stage-1', 'model.safetensors');
  if (!existsSync(model)) {
    await mclip(['distill', '--teacher', MODEL, '--init', MODEL, '--data', LONG, '--vocab', VOCAB, '--sparsity', '0', '--stage-steps', String(STEPS), '--batch', '32', '--out', out, ...flags], join(WORK, 'logs', `ft-${name}.log`));
  }
  return model;
}

const pct = (x: number) => (100 * x).toFixed(1);
const ms = (x: number | undefined) => (x === undefined ? '—' : x.toFixed(2));

/** The latency table: one row per tower, caption set and setting, with speed-ups against `as-trained`. */
function latencyTable(lat: { rows: LatencyRow[]; lengths: { typical: number; long: number } }): string[] {
  const L: string[] = [];
  L.push(`Text-tower latency, median of ${RUNS} runs at batch 1 (cycling over 80 prompts) and ${runsFor(80)} at batch 80, after 3 and 1 warm-ups (ms), tfjs ${tf.getBackend() ?? ''} and onnxruntime-node (1 thread); mean tokens per caption (SOT … EOT): typical ${lat.lengths.typical.toFixed(1)}, long ${lat.lengths.long.toFixed(1)} of 77. Δ = max|Δ|/max|ref| of the features against as-trained.`, '');
  L.push('| model | captions | setting | text MMACs | tfjs b1 | tfjs b80 | ORT b1 | ORT b80 | MACs ratio | tfjs b1 speed-up | tfjs b80 speed-up | ORT b1 speed-up | Δ tfjs | Δ ORT |');
  L.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  for (const r of lat.rows) {
    const base = lat.rows.find((x) => x.model === r.model && x.captions === r.captions && x.setting === 'as-trained')!;
    const mm = r.macs !== undefined ? (r.macs / 1e6).toFixed(2) : '—';
    const mr = r.macs !== undefined && base.macs !== undefined ? `${(base.macs / r.macs).toFixed(2)}×` : '—';
    L.push(`| ${r.model} | ${r.captions} | ${r.setting} | ${mm} | ${ms(r.tfjs.b1)} | ${ms(r.tfjs.b80)} | ${ms(r.ort?.b1)} | ${ms(r.ort?.b80)} | ${mr} | ${(base.tfjs.b1 / r.tfjs.b1).toFixed(2)}× | ${(base.tfjs.b80 / r.tfjs.b80).toFixed(2)}× | ${r.ort && base.ort ? `${(base.ort.b1 / r.ort.b1).toFixed(2)}×` : '—'} | ${r.diff ? r.diff.tfjs.toExponential(1) : '—'} | ${r.diff?.ort !== undefined ? r.diff.ort.toExponential(1) : '—'} |`);
  }
  return L;
}

async function main(): Promise<void> {
  mkdirSync(WORK, { recursive: true });
  const timings = new Timings(join(WORK, 'timings.json'));
  if (!existsSync(join(DATA, 'manifest.json'))) await mclip(['data', 'emoji', '--out', DATA], join(WORK, 'logs', 'data.log'));
  await timings.stage('long captions', existsSync(join(LONG, 'manifest.json')), buildLongCaptions);
  if (process.argv.includes('--latency-only')) {
    // re-measures the latency alone (e.g. on a quiet machine), leaving the accuracy stages as they are
    rmSync(join(WORK, 'latency.json'), { force: true });
    const lat = (await timings.stage('latency', false, latency)) ?? (await latency());
    publish(join(WORK, 'latency.md'), ['# bench/tokens: latency', '', ...latencyTable(lat), '', `Measured ${new Date().toISOString().slice(0, 16)} UTC.`].join('\n'));
    return;
  }

  // Accuracy before fine-tuning: every setting on short and long captions.
  const before = new Map<string, { short: Scores; long: Scores }>();
  for (const st of SETTINGS) {
    const key = st.name.replace(/[^a-z0-9]+/gi, '-');
    before.set(st.name, { short: await evalScores(MODEL, DATA, st.flags, `shipped-short-${key}`), long: await evalScores(MODEL, LONG, st.flags, `shipped-long-${key}`) });
  }
  // Fine-tunes on the long captions: the control (unreduced) and with the reducers active.
  const ftFull = await fineTune('unreduced', []);
  const ftRed = await fineTune('reduced', REDUCED.flags);
  const after = {
    control: { short: await evalScores(ftFull, DATA, [], 'ft-unreduced-short'), long: await evalScores(ftFull, LONG, [], 'ft-unreduced-long') },
    controlReduced: { short: await evalScores(ftFull, DATA, REDUCED.flags, 'ft-unreduced-short-reduced'), long: await evalScores(ftFull, LONG, REDUCED.flags, 'ft-unreduced-long-reduced') },
    reduced: { short: await evalScores(ftRed, DATA, REDUCED.flags, 'ft-reduced-short'), long: await evalScores(ftRed, LONG, REDUCED.flags, 'ft-reduced-long') },
  };

  // Latency last, so that it can be re-measured alone on a quiet machine (delete WORK/latency.json).
  const lat = (await timings.stage('latency', existsSync(join(WORK, 'latency.json')), latency)) ?? (await latency());

  const L: string[] = [];
  L.push('# bench/tokens', '', ...latencyTable(lat));
  L.push('', `Accuracy of the shipped emoji model, ${SAMPLE} held-out Facebook renderings (mclip eval --engine tfjs): zero-shot over the categories, R@1 among ${SAMPLE}; text MACs per caption measured on the captions with the reducers in place (M).`, '');
  L.push('| setting | short: ZS top-1 | top-5 | R@1 i→t | t→i | text MMACs | long: ZS top-1 | top-5 | R@1 i→t | t→i | text MMACs |');
  L.push('|---|---|---|---|---|---|---|---|---|---|---|');
  const row = (name: string, s: { short: Scores; long: Scores }) =>
    `| ${name} | ${pct(s.short.top1)} | ${pct(s.short.top5)} | ${pct(s.short.i2t)} | ${pct(s.short.t2i)} | ${(s.short.textMacs / 1e6).toFixed(2)} | ${pct(s.long.top1)} | ${pct(s.long.top5)} | ${pct(s.long.i2t)} | ${pct(s.long.t2i)} | ${(s.long.textMacs / 1e6).toFixed(2)} |`;
  for (const st of SETTINGS) L.push(row(st.name, before.get(st.name)!));
  L.push('', `After ${STEPS} steps of fine-tuning on the long captions (mclip distill --sparsity 0, batch 32, the shipped model as live teacher), same evaluation; reducers: ${REDUCED.flags.join(' ')}.`, '');
  L.push('| model | evaluated with | short: ZS top-1 | top-5 | R@1 i→t | t→i | text MMACs | long: ZS top-1 | top-5 | R@1 i→t | t→i | text MMACs |');
  L.push('|---|---|---|---|---|---|---|---|---|---|---|---|');
  const row2 = (m: string, w: string, s: { short: Scores; long: Scores }) => `| ${m} | ${row(w, s).slice(2)}`;
  L.push(row2('fine-tuned unreduced', 'as trained', after.control));
  L.push(row2('fine-tuned unreduced', 'the reducers', after.controlReduced));
  L.push(row2('fine-tuned with the reducers', 'the reducers', after.reduced));
  L.push('', `Wall time per stage (s): ${timings.entries().map(([k, v]) => `${k} ${v.toFixed(0)}`).join(', ')}.`);
  publish(join(WORK, 'tokens.md'), L.join('\n'));
}

runBench(main);
