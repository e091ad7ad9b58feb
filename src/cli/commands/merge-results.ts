/**
 * `mclip merge-results PART… --out OUT`: joins the parts of a sharded run (`--shard i/N`,
 * src/cli/shard.ts) into what the unsharded run writes.
 *
 * - reinforce parts (folders with reinforce-shard.json): OUT gets every part's output shards
 *   (hard links, else copies) and part 0's reinforce.json: the unsharded run's folder, which a
 *   later unsharded `mclip reinforce --out OUT` finds complete.
 * - eval parts (`mclip eval --shard i/N --json PART`): the embeddings of every sample are joined
 *   in sample order and scored over the union with part 0's classifier, as the unsharded run
 *   scores them: the same zero-shot and retrieval figures; OUT is the JSON report (+ the table on
 *   stdout, --plot as eval's).
 *
 * Refused, in one line: a missing or doubled part, parts of different splits (N, input, settings,
 * data, models), an unfinished part.
 */
import { copyFileSync, existsSync, linkSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { Argv } from 'yargs';
import { MclipError } from '../../errors.js';
import { atomicWriteJson } from '../../base/data/index.js';
import { renderScatterSvg, renderTable, writeReport, type EvalRow, type SplitBaselines } from '../../eval/index.js';
import { shardRange } from '../shard.js';
import { UsageError } from '../usage.js';
import type { GlobalArgs } from '../run.js';
import { readReinforcePart, REINFORCE_PART_FILE, type ReinforcePart } from './reinforce.js';
import { EVAL_PART_FORMAT, loadEmbeddings, plotLatency, scoreRow, type EngineEntry, type EvalPart, type EvalPartConfig } from './eval.js';

export interface MergeResultsArgs extends GlobalArgs {
  parts: string[];
  out: string;
  plot?: string;
}

export interface MergeSummary {
  kind: 'reinforce' | 'eval';
  parts: number;
  /** reinforce: output shards placed in OUT; eval: samples scored */
  items: number;
}

interface Located {
  where: string;
  index: number;
  count: number;
}

const partName = (p: Located): string => `${p.where} (part ${p.index}/${p.count})`;

/** Sorts parts by index; refuses mixed N, a part given twice or a missing one. */
function checkCover<T extends Located>(parts: T[]): T[] {
  const first = parts[0];
  for (const p of parts) {
    if (p.count !== first.count) throw new MclipError(`${partName(p)} and ${partName(first)} are parts of different splits (/${p.count} vs /${first.count})`);
    if (!(Number.isInteger(p.index) && p.index >= 0 && p.index < p.count)) throw new MclipError(`${p.where}: part index ${p.index} is outside 0 … ${p.count - 1}`);
  }
  const sorted = [...parts].sort((a, b) => a.index - b.index);
  for (let i = 1; i < sorted.length; i++)
    if (sorted[i].index === sorted[i - 1].index) throw new MclipError(`part ${sorted[i].index}/${first.count} given twice: ${sorted[i - 1].where} and ${sorted[i].where}`);
  const have = new Set(sorted.map((p) => p.index));
  const missing = Array.from({ length: first.count }, (_, i) => i).filter((i) => !have.has(i));
  if (missing.length > 0) {
    const list = missing.slice(0, 5).map((i) => `${i}/${first.count}`).join(', ') + (missing.length > 5 ? `, … (${missing.length} in all)` : '');
    throw new MclipError(`missing part${missing.length > 1 ? 's' : ''} ${list}: got ${sorted.length} of ${first.count} parts`);
  }
  return sorted;
}

/** A short rendering of a value for "differs in KEY: A ≠ B". */
function brief(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 60 ? `${s.slice(0, 57)}…` : s;
}

/** The first key in which `b` differs from `a`, or undefined. */
function firstDifference(a: Record<string, unknown>, b: Record<string, unknown>): string | undefined {
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])];
  return keys.find((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]));
}

// ---------------------------------------------------------------------------------------------
// reinforce

interface ReinforceInput extends Located {
  part: ReinforcePart;
  /** reinforce.json: the settings compared, the bytes copied */
  settingsText: string;
  settings: Record<string, unknown>;
}

function readReinforceInput(dir: string): ReinforceInput {
  const part = readReinforcePart(dir);
  if (!part) throw new MclipError(`${dir}: not a part of a sharded reinforce run (no ${REINFORCE_PART_FILE}; write parts with mclip reinforce --shard i/N --out DIR)`);
  const path = join(dir, 'reinforce.json');
  const where: Located = { where: dir, index: part.index, count: part.count };
  if (!existsSync(path)) throw new MclipError(`${partName(where)}: no reinforce.json: the job never started (run mclip reinforce … --shard ${part.shard} --out ${dir})`);
  const settingsText = readFileSync(path, 'utf8');
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(settingsText) as Record<string, unknown>;
  } catch {
    throw new MclipError(`${path}: not valid JSON`);
  }
  const settings = { format: parsed.format, teachers: parsed.teachers, augs: parsed.augs, seed: parsed.seed, syn: parsed.syn };
  return { ...where, part, settingsText, settings };
}

/** Hard-links `from` to `to` (same file system), else copies it via a temporary + rename. */
function place(from: string, to: string): void {
  try {
    linkSync(from, to);
    return;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new MclipError(`${to}: already exists`);
  }
  const tmp = join(to, '..', `.${basename(to)}.tmp-${process.pid}-merge`);
  try {
    copyFileSync(from, tmp);
    renameSync(tmp, to);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new MclipError(`cannot write ${to}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { cause: e });
  }
}

function mergeReinforce(dirs: readonly string[], out: string, quiet: boolean): MergeSummary {
  const parts = checkCover(dirs.map(readReinforceInput));
  const first = parts[0];
  for (const p of parts) {
    if (JSON.stringify(p.part.inputs) !== JSON.stringify(first.part.inputs))
      throw new MclipError(`${partName(p)} split another input than ${partName(first)} (${p.part.inputs.length} vs ${first.part.inputs.length} input shards${p.part.inputs.length === first.part.inputs.length ? ', other names' : ''})`);
    const key = firstDifference(first.settings, p.settings);
    if (key !== undefined) throw new MclipError(`${partName(p)} differs from ${partName(first)} in ${key}: ${brief(p.settings[key])} ≠ ${brief(first.settings[key])}`);
    const r = shardRange(p.part.inputs.length, p);
    const expected = p.part.inputs.slice(r.start, r.end);
    if (JSON.stringify(p.part.assigned) !== JSON.stringify(expected))
      throw new MclipError(`${partName(p)}: its ${REINFORCE_PART_FILE} lists input shards ${brief(p.part.assigned)}, but part ${p.index}/${p.count} of ${p.part.inputs.length} is ${brief(expected)}`);
    const missing = p.part.assigned.filter((n) => !existsSync(join(p.where, n)));
    if (missing.length > 0)
      throw new MclipError(`${partName(p)} is incomplete: ${missing.length} of ${p.part.assigned.length} output shards missing (first: ${missing[0]}); rerun its job (mclip reinforce … --shard ${p.part.shard}) to finish it`);
    const stray = readdirSync(p.where).filter((f) => f.endsWith('.tar') && !f.startsWith('.') && !p.part.assigned.includes(f));
    if (stray.length > 0) throw new MclipError(`${partName(p)}: holds ${stray[0]}, which is not one of its input shards`);
  }
  if (existsSync(out) && (!statSync(out).isDirectory() || readdirSync(out).length > 0)) throw new MclipError(`${out}: not empty; merge into a new folder`);
  mkdirSync(out, { recursive: true });
  let items = 0;
  for (const p of parts)
    for (const name of p.part.assigned) {
      place(join(p.where, name), join(out, name));
      items++;
    }
  const tmp = join(out, `.reinforce.json.tmp-${process.pid}`);
  writeFileSync(tmp, first.settingsText);
  renameSync(tmp, join(out, 'reinforce.json'));
  if (!quiet) console.error(`mclip: merged ${parts.length} reinforce parts (${items} shards of ${first.part.inputs.length}) into ${out}`);
  return { kind: 'reinforce', parts: parts.length, items };
}

// ---------------------------------------------------------------------------------------------
// eval

interface EvalInput extends Located {
  part: EvalPart;
}

function readEvalInput(file: string): EvalInput {
  let p: Partial<EvalPart>;
  try {
    p = JSON.parse(readFileSync(file, 'utf8')) as Partial<EvalPart>;
  } catch (e) {
    throw new MclipError(`${file}: ${e instanceof SyntaxError ? 'not valid JSON' : ((e as NodeJS.ErrnoException).code ?? String(e))}`);
  }
  if (p.format !== EVAL_PART_FORMAT || p.version !== 1 || !Number.isInteger(p.index) || !Number.isInteger(p.count) || !p.config || !p.range || !Array.isArray(p.models) || !p.baselines)
    throw new MclipError(`${file}: not an ${EVAL_PART_FORMAT} file (write parts with mclip eval … --shard i/N --json PART.json)`);
  const part: EvalPart = { format: EVAL_PART_FORMAT, version: 1, createdAt: p.createdAt ?? '', index: p.index!, count: p.count!, range: p.range, config: p.config, baselines: p.baselines, models: p.models };
  return { where: file, index: part.index, count: part.count, part };
}

function mergeEval(files: readonly string[], out: string, plot: string | undefined, quiet: boolean): MergeSummary {
  const parts = checkCover(files.map(readEvalInput));
  const first = parts[0];
  const cfg: EvalPartConfig = first.part.config;
  for (const p of parts) {
    const key = firstDifference({ ...first.part.config }, { ...p.part.config });
    if (key !== undefined) {
      const k = key as keyof EvalPartConfig;
      throw new MclipError(`${partName(p)} differs from ${partName(first)} in ${key}: ${brief(p.part.config[k])} ≠ ${brief(cfg[k])}`);
    }
    const r = shardRange(cfg.samples, p, cfg.batch);
    if (p.part.range.start !== r.start || p.part.range.end !== r.end)
      throw new MclipError(`${partName(p)} holds samples ${p.part.range.start}–${p.part.range.end - 1}, but part ${p.index}/${p.count} of ${cfg.samples} (batch ${cfg.batch}) is ${r.start}–${r.end - 1}`);
    const names = p.part.models.map((m) => m.name);
    const want = cfg.models.map((m) => m.name);
    if (JSON.stringify(names) !== JSON.stringify(want)) throw new MclipError(`${partName(p)} holds models ${brief(names)}, expected ${brief(want)} (an unfinished or damaged part)`);
  }
  const n = cfg.samples;
  const labels = Int32Array.from(cfg.labels);
  const textToImage = Int32Array.from({ length: n }, (_, i) => i);
  const rows: EvalRow[] = [];
  const engines: Array<EngineEntry & { parts: { shard: string; engine: string; embedSeconds: number }[] }> = [];
  for (let m = 0; m < cfg.models.length; m++) {
    const name = cfg.models[m].name;
    const base = first.part.models[m];
    const clfE = loadEmbeddings(base.classifier, `${partName(first)}: ${name} classifier`);
    const clf = { weights: clfE.data, numClasses: clfE.n, dim: clfE.dim };
    if (clf.numClasses !== cfg.classNames.length) throw new MclipError(`${partName(first)}: ${name} classifier has ${clf.numClasses} classes, expected ${cfg.classNames.length}`);
    const images = new Float32Array(n * clf.dim);
    const captions = new Float32Array(n * clf.dim);
    let seconds = 0;
    for (const p of parts) {
      const pm = p.part.models[m];
      const where = `${partName(p)}: ${name}`;
      const ie = loadEmbeddings(pm.images, `${where} images`);
      const te = loadEmbeddings(pm.captions, `${where} captions`);
      const rows = p.part.range.end - p.part.range.start;
      for (const [e, what] of [
        [ie, 'image'],
        [te, 'caption'],
      ] as const)
        if (e.n !== rows || e.dim !== clf.dim) throw new MclipError(`${where}: ${e.n}×${e.dim} ${what} embeddings, expected ${rows}×${clf.dim}`);
      if (pm.classifier.data !== base.classifier.data && !quiet)
        console.error(`mclip: warning: ${where}: class-prompt embeddings differ from ${partName(first)}'s (engine ${pm.engine.engine} vs ${base.engine.engine}); the figures use part 0's`);
      images.set(ie.data, p.part.range.start * clf.dim);
      captions.set(te.data, p.part.range.start * clf.dim);
      seconds += pm.engine.embedSeconds;
    }
    const scores = scoreRow(clf, { data: images, n, dim: clf.dim }, { data: captions, n, dim: clf.dim }, labels, textToImage);
    const { name: rowName, params, macs, latency } = base.row;
    rows.push({ name: rowName, params, macs, zeroShot: scores.zeroShot, retrieval: scores.retrieval, ...(latency ? { latency } : {}) });
    engines.push({
      ...base.engine,
      embedSeconds: seconds,
      samplesPerSecond: n / Math.max(seconds, 1e-9),
      parts: parts.map((p) => ({ shard: `${p.index}/${p.count}`, engine: p.part.models[m].engine.engine, embedSeconds: p.part.models[m].engine.embedSeconds })),
    });
  }
  const baselines: SplitBaselines = first.part.baselines;
  console.log(renderTable(rows, { baselines }));
  const meta = { data: cfg.data, split: cfg.split, label: cfg.label, samples: n, classes: cfg.classNames.length, templates: cfg.templates, batch: cfg.batch, engine: cfg.engine, engines, shards: first.count };
  writeReport(out, rows, meta, baselines);
  if (!quiet) console.error(`mclip: merged ${parts.length} eval parts (${n} samples) into ${out}`);
  if (plot) {
    const tmp = `${plot}.tmp-${process.pid}`;
    writeFileSync(tmp, renderScatterSvg(rows, { x: cfg.latency ? 'latency' : 'macs', y: 'top1', latency: plotLatency({ ort: cfg.ort }) }));
    renameSync(tmp, plot);
    if (!quiet) console.error(`mclip: plot written to ${plot}`);
  }
  return { kind: 'eval', parts: parts.length, items: n };
}

/** Joins the parts (see the file comment): reinforce part folders, or eval part files. */
export function runMergeResults(args: MergeResultsArgs): MergeSummary {
  const parts = args.parts;
  if (parts.length === 0) throw new UsageError('name the parts to merge (reinforce part folders or eval part files)');
  for (const p of parts) if (!existsSync(p)) throw new MclipError(`${p}: part not found`);
  const dirs = parts.filter((p) => statSync(p).isDirectory());
  if (dirs.length > 0 && dirs.length < parts.length)
    throw new UsageError(`mixed parts: ${dirs[0]} is a folder (reinforce), ${parts.find((p) => !dirs.includes(p))} a file (eval)`);
  if (dirs.length > 0) {
    if (args.plot) throw new UsageError('--plot: only for eval parts');
    return mergeReinforce(parts, args.out, args.quiet === true);
  }
  return mergeEval(parts, args.out, args.plot, args.quiet === true);
}

export function mergeResultsCommand(y: Argv): Argv {
  return y.command(
    'merge-results <parts..>',
    'join the parts of a sharded run (--shard i/N) into what the unsharded run writes: reinforce part folders → one shard folder, eval part files → one report',
    (a) =>
      a
        .positional('parts', { type: 'string', array: true, demandOption: true, describe: 'every part: the --out folders of mclip reinforce --shard i/N, or the --json files of mclip eval --shard i/N' })
        .option('out', { type: 'string', demandOption: true, describe: 'reinforce: the merged shard folder (new or empty); eval: the JSON report' })
        .option('plot', { type: 'string', describe: 'eval: write the accuracy-vs-latency SVG here (as mclip eval --plot)' }),
    (args) => {
      runMergeResults({
        parts: (args.parts ?? []).map(String),
        out: args.out,
        plot: args.plot,
        quiet: args.quiet === true,
        debug: args.debug === true,
      });
    },
  );
}
