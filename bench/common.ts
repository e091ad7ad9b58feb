/**
 * bench/common — what the training benches share: `--flag value` parsing, the `mclip` child-process
 * runner (one log per job), cached `mclip eval` reports of checkpoints and the scores read off them,
 * and the step of a run folder's latest checkpoint.
 */
import { createWriteStream, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readImageTextDataset } from '../src/base/data/index.js';
import type { SplitBaselines } from '../src/eval/baselines.js';
import type { EvalReport } from '../src/eval/report.js';

/** The repository root (this file runs as dist/bench/common.js). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI = join(ROOT, 'bin', 'mclip.js');

/** The value after `--NAME` on the command line, else DEF. */
export function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : def;
}

/** Runs `mclip ARGS` (the CLI script `cli`, default this checkout's) as a child process; its stderr goes to LOG (appended), its stdout is returned. */
export function mclip(args: string[], log: string, cli: string = CLI): Promise<string> {
  mkdirSync(dirname(log), { recursive: true });
  const started = Date.now();
  console.error(`$ mclip ${args.join(' ')}   (log: ${log}${cli === CLI ? '' : `; ${cli}`})`);
  return new Promise((ok, fail) => {
    const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const err = createWriteStream(log, { flags: 'a' });
    err.write(`$ mclip ${args.join(' ')}\n`);
    child.stderr.pipe(err);
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.on('error', fail);
    child.on('close', (code) => {
      err.end();
      if (code !== 0) fail(new Error(`mclip ${args[0]} failed (exit ${code}); see ${log}`));
      else {
        console.error(`  done in ${((Date.now() - started) / 1000).toFixed(0)} s: mclip ${args.slice(0, 2).join(' ')} … (${log})`);
        ok(out);
      }
    });
  });
}

export interface Scores {
  /** Zero-shot over the 10 categories (top-1, top-5). */
  top1: number;
  top5: number;
  /** Zero-shot over the subcategories (top-1) and their number. */
  subTop1: number;
  subClasses: number;
  /** Retrieval R@1 and R@10, image → text and text → image. */
  i2t: number;
  t2i: number;
  i2t10: number;
  t2i10: number;
  samples: number;
  /** Cost of the evaluated (fused) model, from the report: trainable parameters and MACs per image / per text. */
  params: { image: number; text: number; total: number };
  macs: { image: number; text: number };
  /** Chance and majority-class baselines of the evaluated samples, per label (when the report has them). */
  baselines: { category?: SplitBaselines; subcategory?: SplitBaselines };
}

export interface Setup {
  work: string;
  data: string;
  vocab: string;
  evalSample: number;
}

export type Report = EvalReport;

/**
 * The emoji data in SETUP.data (`mclip data emoji`) and a 4096-token vocabulary in SETUP.vocab trained on
 * the train split's captions only (the held-out vendor shares the names); each skipped when it exists.
 */
export async function prepareData(s: Setup, logs: string): Promise<void> {
  if (!existsSync(join(s.data, 'manifest.json'))) await mclip(['data', 'emoji', '--out', s.data], join(logs, 'data.log'));
  if (!existsSync(join(s.vocab, 'clip-vocab.json'))) {
    const caps = join(s.work, 'captions.txt');
    const lines: string[] = [];
    for await (const smp of readImageTextDataset(s.data, 'train')) lines.push(smp.caption, ...smp.captions);
    writeFileSync(caps, lines.join('\n'));
    await mclip(['vocab', 'train', '--texts', caps, '--size', '4096', '--out', s.vocab], join(logs, 'vocab.log'));
  }
}

/** Where the eval report of a checkpoint is cached (outside checkpoints/, which the trainer prunes). */
export function reportPath(cache: string, label: string): string {
  return `${cache}-${label}.json`;
}

/** `mclip eval` of one checkpoint with LABEL as the zero-shot class, cached at reportPath(CACHE, LABEL). */
export async function evalReport(ckpt: string, cache: string, label: string, s: Setup, log: string): Promise<Report> {
  const report = reportPath(cache, label);
  mkdirSync(dirname(report), { recursive: true });
  if (!existsSync(report)) {
    await mclip(['eval', '--model', ckpt, '--data', s.data, '--split', 'eval', '--vocab', s.vocab, '--sample', String(s.evalSample), '--label', label, '--no-latency', '--json', report, '--quiet'], log);
  }
  return JSON.parse(readFileSync(report, 'utf8')) as Report;
}

/** Zero-shot (categories and subcategories) + retrieval of one checkpoint. */
export async function evaluate(ckpt: string, cache: string, s: Setup, log: string): Promise<Scores> {
  const cat = await evalReport(ckpt, cache, 'category', s, log);
  const sub = await evalReport(ckpt, cache, 'subcategory', s, log);
  const row = cat.rows[0];
  const subRow = sub.rows[0];
  if (!row?.zeroShot || !row.retrieval || !subRow?.zeroShot) throw new Error(`${reportPath(cache, 'category')}: no zero-shot or retrieval scores`);
  const num = (v: unknown, def: number): number => (typeof v === 'number' ? v : def);
  return {
    top1: row.zeroShot.top1,
    top5: row.zeroShot.top5,
    subTop1: subRow.zeroShot.top1,
    subClasses: num(sub.meta.classes, NaN),
    i2t: row.retrieval.i2t.r1,
    t2i: row.retrieval.t2i.r1,
    i2t10: row.retrieval.i2t.r10,
    t2i10: row.retrieval.t2i.r10,
    samples: num(cat.meta.samples, s.evalSample),
    params: row.params,
    macs: { image: row.macs.image, text: row.macs.text },
    baselines: { category: cat.baselines, subcategory: sub.baselines },
  };
}

/** Step of the latest checkpoint of a run folder (0 when it has none). */
export function latestStep(run: string): number {
  const p = join(run, 'checkpoints', 'latest');
  if (!existsSync(p)) return 0;
  const m = /step-(\d+)/.exec(readFileSync(p, 'utf8'));
  return m ? Number(m[1]) : 0;
}

/** Writes a bench's markdown report to `path` and prints it. */
export function publish(path: string, md: string): void {
  writeFileSync(path, md + '\n');
  console.log(md);
}

/** Runs a bench's main; a failure prints its message and exits 1. */
export function runBench(main: () => Promise<void>): void {
  main().catch((e: unknown) => {
    console.error(e instanceof Error ? e.message : String(e));
    process.exit(1);
  });
}

/** Wall time (s) of every stage that ran, kept across resumed runs in DIR/timings.json. */
export class Timings {
  private readonly t: Record<string, number>;
  constructor(private readonly path: string) {
    this.t = existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as Record<string, number>) : {};
  }
  /** Runs FN and records its wall time under NAME, unless SKIP (then the time of an earlier run stays). */
  async stage<T>(name: string, skip: boolean, fn: () => Promise<T>): Promise<T | undefined> {
    if (skip) return undefined;
    const t0 = Date.now();
    const out = await fn();
    this.t[name] = (Date.now() - t0) / 1000;
    writeFileSync(this.path, JSON.stringify(this.t, null, 2) + '\n');
    return out;
  }
  entries(): Array<[string, number]> {
    return Object.entries(this.t);
  }
}
