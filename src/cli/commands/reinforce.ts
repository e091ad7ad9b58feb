import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import type { Argv } from 'yargs';
import { withOptions, type OptionTable } from '../options.js';
import * as tf from '../../base/tf.js';
import { MclipError } from '../../errors.js';
import { atomicWriteJson, listShards, manifestSampleCount } from '../../base/data/index.js';
import { startProgress, formatDuration, progressLogSeconds } from '../progress.js';
import { ClipTokenizer, resolveVocabDir } from '../../base/tokenizer/index.js';
import { openTeacher, reinforceShards, type ReinforceSummary, type Teacher } from '../../base/reinforce/index.js';
import type { TeacherEncoderFactory } from '../../base/reinforce/teachers.js';
import { isIdentityNormalisation } from '../../base/preprocess/spec.js';
import { ENGINES, type EngineName } from '../../eval/engine.js';
import { openEngine } from '../../eval/engine-ort.js';
import { UsageError } from '../usage.js';
import { startBackend, type GlobalArgs } from '../run.js';
import { formatShard, parseShard, shardItems, type ShardSpec } from '../shard.js';
import { heldByFoldCaches } from '../../base/nn/fold-cache.js';

export interface ReinforceArgs extends GlobalArgs {
  data: string;
  split: string;
  teacher: string[];
  teacherScale?: number[];
  augs: number;
  out: string;
  vocab?: string;
  imageSize: number;
  seed: number;
  syn: number;
  batch: number;
  /** What runs checkpoint teachers (default ort: their cached, verified ONNX export in onnxruntime-node; .onnx teachers always run in ORT). */
  engine?: EngineName;
  /** `i/N`: reinforce only part i of N of the input shards (src/cli/shard.ts); merge the parts with `mclip merge-results`. */
  shard?: string;
}

/** The file that marks an output folder as one part of a sharded run (beside reinforce.json). */
export const REINFORCE_PART_FILE = 'reinforce-shard.json';
export const REINFORCE_PART_FORMAT = 'mclip-reinforce-shard-v1';

/** `reinforce-shard.json`: which part of which input this folder holds. */
export interface ReinforcePart {
  format: typeof REINFORCE_PART_FORMAT;
  /** `i/N` */
  shard: string;
  index: number;
  count: number;
  /** basenames of every input shard of the whole run, in order */
  inputs: string[];
  /** basenames of the input shards of this part (= its output shards once complete) */
  assigned: string[];
}

/** Reads `dir/reinforce-shard.json` (undefined when there is none). */
export function readReinforcePart(dir: string): ReinforcePart | undefined {
  const path = join(dir, REINFORCE_PART_FILE);
  if (!existsSync(path)) return undefined;
  let p: Partial<ReinforcePart>;
  try {
    p = JSON.parse(readFileSync(path, 'utf8')) as Partial<ReinforcePart>;
  } catch {
    throw new MclipError(`${path}: not valid JSON (remove the folder's ${REINFORCE_PART_FILE} or choose another --out)`);
  }
  const strings = (x: unknown): x is string[] => Array.isArray(x) && x.every((v) => typeof v === 'string');
  if (p.format !== REINFORCE_PART_FORMAT || !Number.isInteger(p.index) || !Number.isInteger(p.count) || !strings(p.inputs) || !strings(p.assigned))
    throw new MclipError(`${path}: not a ${REINFORCE_PART_FORMAT} file`);
  return { format: REINFORCE_PART_FORMAT, shard: `${p.index}/${p.count}`, index: p.index!, count: p.count!, inputs: p.inputs, assigned: p.assigned };
}

/**
 * Marks `out` as part `shard` of a sharded run, or checks the mark a previous (interrupted) run of
 * the same part left. A folder holding another part, or an unsharded run, is refused; so is an
 * unsharded run into a part's folder.
 */
function checkPart(out: string, shard: ShardSpec | undefined, inputs: string[], assigned: string[]): void {
  const old = readReinforcePart(out);
  if (!shard) {
    if (old) throw new MclipError(`${out}: holds part ${old.shard} of a sharded run; pass --shard ${old.shard} to resume it, or use another --out`);
    return;
  }
  const now = formatShard(shard);
  if (old) {
    if (old.shard !== now) throw new MclipError(`${out}: holds part ${old.shard} of a sharded run, not ${now} — use another --out for each part`);
    if (JSON.stringify(old.inputs) !== JSON.stringify(inputs)) throw new MclipError(`${out}: part ${now} of another input (${old.inputs.length} input shards, now ${inputs.length}) — use another --out`);
    return;
  }
  if (existsSync(join(out, 'reinforce.json'))) throw new MclipError(`${out}: holds an unsharded run; use another --out for part ${now}`);
  mkdirSync(out, { recursive: true });
  const part: ReinforcePart = { format: REINFORCE_PART_FORMAT, shard: now, index: shard.index, count: shard.count, inputs, assigned };
  atomicWriteJson(join(out, REINFORCE_PART_FILE), part);
}

function list<T>(v: T | T[] | undefined): T[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

/**
 * Checkpoint teachers in onnxruntime-node: each one's cached, verified ONNX export (src/eval's
 * `openEngine`), or its tfjs model when that cannot be had (the reason printed in one line).
 */
function ortTeachers(quiet: boolean | undefined, tfjsDescription: string): TeacherEncoderFactory {
  return async (model, path) => {
    const name = basename(path);
    const opened = await openEngine('ort', model, { checkpoint: path, tfjsDescription });
    if (!quiet || opened.report.fallback) console.error(`mclip: teacher ${name}: ${opened.line}`);
    if (opened.engine.name === 'ort') return opened.engine;
    await opened.engine.dispose();
    return null; // the teacher's own tfjs path
  };
}

/**
 * `mclip reinforce`: teachers embed N augmentations of every image and the real + synthetic
 * captions; writes DataCompDR-style shards (one per input shard, resumable). See
 * src/base/reinforce/ for the format and the ONNX teacher interface.
 */
export async function runReinforce(args: ReinforceArgs): Promise<ReinforceSummary> {
  const shard = parseShard(args.shard);
  const teachers = list(args.teacher);
  if (teachers.length === 0) throw new MclipError('--teacher is required (a checkpoint or an .onnx model; repeat it for several teachers)');
  const scales = list(args.teacherScale);
  if (scales.length > 1 && scales.length !== teachers.length)
    throw new MclipError(`--teacher-scale: give one value for all teachers or one per teacher (${teachers.length}), got ${scales.length}`);
  for (const s of scales) if (!(s > 0)) throw new MclipError(`--teacher-scale must be > 0, got ${s}`);
  if (!Number.isInteger(args.augs) || args.augs < 1) throw new MclipError(`--augs must be a positive integer, got ${args.augs}`);
  if (!Number.isInteger(args.imageSize) || args.imageSize < 1) throw new MclipError(`--image-size must be a positive integer, got ${args.imageSize}`);
  if (!Number.isInteger(args.batch) || args.batch < 1) throw new MclipError(`--batch must be a positive integer, got ${args.batch}`);
  const input = args.split ? join(args.data, args.split) : args.data;
  if (!existsSync(input)) throw new MclipError(`${input}: shard folder not found (expected --data DIR with a '${args.split}' split, e.g. from 'mclip data …')`);
  for (const t of teachers) if (!existsSync(t)) throw new MclipError(`teacher ${t}: file not found`);
  const allShards = listShards(input);
  const shardFiles = shard ? shardItems(allShards, shard, { what: `input shards in ${input}` }).items : allShards;
  const engine = args.engine ?? 'ort';
  if (!ENGINES.includes(engine)) throw new UsageError(`--engine: expected one of ${ENGINES.join(', ')}, got '${String(engine)}'`);
  checkPart(args.out, shard, allShards.map((f) => basename(f)), shardFiles.map((f) => basename(f)));
  const tokenizer = ClipTokenizer.fromDir(resolveVocabDir(args.vocab));
  const backend = await startBackend(args);
  const encoder = engine === 'ort' ? ortTeachers(args.quiet, `tfjs ${backend.name}, ${backend.threads} thread${backend.threads === 1 ? '' : 's'}`) : undefined;

  const loaded: Teacher[] = [];
  try {
    for (let i = 0; i < teachers.length; i++) {
      loaded.push(await openTeacher(teachers[i], { logitScale: scales.length === 0 ? 100 : scales.length === 1 ? scales[0] : scales[i], imageSize: args.imageSize, encoder }));
    }
    if (!args.quiet) {
      for (const t of loaded) console.error(`mclip: teacher ${t.name}: ${t.dim}-d, ${t.imageSize}px, logit scale ${t.logitScale}, engine ${t.engine ?? 'tfjs'}${t.preprocess && !isIdentityNormalisation(t.preprocess) ? `, images normalised (mean ${t.preprocess.mean.join('/')}, std ${t.preprocess.std.join('/')})` : ''}`);
    }
    const nShards = shardFiles.length;
    // Progress counts samples: the split's size from the dataset manifest (none when --data is the shard folder itself; a part's share of it), else 1000 per shard (re-estimated as shards finish).
    const manifest = args.split ? manifestSampleCount(args.data, args.split) : undefined;
    const known = manifest === undefined ? undefined : Math.round((manifest * nShards) / allShards.length);
    if (shard && !args.quiet) console.error(`mclip: part ${formatShard(shard)}: input shards ${basename(shardFiles[0])} … ${basename(shardFiles[nShards - 1])} (${nShards} of ${allShards.length})`);
    let total = known ?? nShards * 1000;
    const tty = Boolean(process.stderr.isTTY);
    const bar = tty ? startProgress({ label: 'reinforce', total, unit: 'samples', quiet: args.quiet, tty: true }) : null;
    let samples = 0;
    let done = 0;
    let inShard = 0;
    let shardT0 = Date.now();
    let lastLine = Date.now();
    const t0 = Date.now();
    const before = tf.memory().numTensors - heldByFoldCaches();
    const logEveryMs = 1000 * progressLogSeconds();
    const rate = () => (samples / Math.max(1e-3, (Date.now() - t0) / 1000)).toFixed(1);
    const sum = await reinforceShards({
      input: shardFiles,
      out: args.out,
      teachers: loaded,
      tokenizer,
      augs: args.augs,
      seed: args.seed,
      syn: args.syn,
      batch: args.batch,
      source: { data: resolve(args.data), split: args.split, teachers: teachers.map((t) => resolve(t)) },
      onSample: () => {
        samples++;
        done++;
        inShard++;
        bar?.update(Math.min(done, total), `${rate()} samples/s`);
        // in a log (no terminal): a line within a long shard every $MCLIP_PROGRESS_SECONDS (default 30 s)
        if (!bar && !args.quiet && Date.now() - lastLine >= logEveryMs) {
          lastLine = Date.now();
          console.error(`mclip: shard in progress: ${inShard} samples in ${formatDuration((Date.now() - shardT0) / 1000)}, ${done}/${total} samples overall, ${rate()} samples/s`);
        }
      },
      onShard: (e) => {
        if (e.status === 'skipped') done += Math.round(total / nShards);
        if (known === undefined && e.status === 'written') total = Math.max(done, Math.round((done / (e.index + 1)) * e.total));
        bar?.update(Math.min(done, total), `shard ${e.index + 1}/${e.total}`);
        inShard = 0;
        shardT0 = Date.now();
        lastLine = Date.now();
        if (bar || args.quiet) return;
        if (e.status === 'skipped') console.error(`mclip: shard ${e.index + 1}/${e.total} ${e.output}: already done, skipped`);
        else console.error(`mclip: shard ${e.index + 1}/${e.total} ${e.output}: ${e.samples} samples${e.bad ? ` (${e.bad} unreadable skipped)` : ''} in ${e.seconds.toFixed(1)} s | ${formatDuration((Date.now() - t0) / 1000)} elapsed`);
      },
    });
    bar?.stop();
    const leaked = tf.memory().numTensors - heldByFoldCaches() - before;
    if (leaked !== 0) console.error(`mclip: warning: tensor count changed by ${leaked} during reinforcement`);
    if (!args.quiet) console.error(`mclip: ${sum.written} shard(s) written (${sum.samples} samples), ${sum.skipped} already done, in ${args.out}`);
    return sum;
  } finally {
    for (const t of loaded) await t.dispose();
  }
}

export const REINFORCE_OPTIONS = {
  data: { type: 'string', demandOption: true, describe: 'image–text dataset folder (mclip data …)' },
  split: { type: 'string', default: 'train', describe: "split folder inside --data ('' = --data itself)" },
  teacher: { type: 'string', array: true, demandOption: true, describe: 'teacher (repeatable; embeddings concatenated in this order): a checkpoint (.safetensors/.pt, run fused) or an ONNX model with inputs image float32 [N,3,H,W] in [0,1] and tokens int64/int32 [N,77], outputs image_features and text_features (as mclip export --tower both)' },
  'teacher-scale': { type: 'number', array: true, describe: 'teacher logit scale 1/τ stored with the embeddings: one for all or one per --teacher (default 100)' },
  augs: { type: 'number', demandOption: true, describe: 'augmentations per image (n_aug)' },
  out: { type: 'string', demandOption: true, describe: 'output shard folder (one shard per input shard; finished shards are skipped on rerun)' },
  vocab: { type: 'string', describe: "tokenizer folder (else $MCLIP_VOCAB); must match the teachers' text vocabulary" },
  'image-size': { type: 'number', default: 64, describe: "input size of ONNX teachers whose 'image' input has no static H×W" },
  seed: { type: 'number', default: 0, describe: 'seed of the augmentation parameters (per sample: seed and key)' },
  syn: { type: 'number', default: 5, describe: "synthetic captions per sample (the first N of the sample's alternative captions)" },
  batch: { type: 'number', default: 32, describe: 'images per teacher forward' },
  shard: { type: 'string', describe: 'i/N: reinforce only part i (0 ≤ i < N) of the input shards, a contiguous run of them (for N parallel jobs, each with its own --out; join them with mclip merge-results)' },
  engine: { type: 'string', default: 'ort', choices: ENGINES, describe: "what runs checkpoint teachers (ort | tfjs): ort = their verified ONNX export in onnxruntime-node (cached by checkpoint hash in $MCLIP_CACHE_DIR/onnx), falling back to tfjs with the reason; tfjs = the tfjs model" },
} as const satisfies OptionTable;

export function reinforceCommand(y: Argv): Argv {
  return y.command<ReinforceArgs>(
    'reinforce',
    'dataset reinforcement: teacher embeddings of N stored augmentations per image and of the real + synthetic captions (DataCompDR-style shards, resumable)',
    (a) =>
      withOptions(a, REINFORCE_OPTIONS) as unknown as Argv<ReinforceArgs>,
    async (args) => {
      await runReinforce(args);
    },
  );
}
