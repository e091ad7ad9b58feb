/**
 * `mclip run`: carries out a recipe's plan under one run folder.
 *
 *   RUN/recipe.yaml          the recipe as run (copy)
 *   RUN/manifest.json        versions, backend, seed, and each stage's command, inputs, outputs, wall time
 *   RUN/stages/NAME/         a stage's outputs; NAME/done.json (written last, atomically) commits it
 *
 * A stage whose done.json holds its current fingerprint is skipped on --resume; any other folder is a
 * stage that did not finish, or whose recipe (or an upstream stage) changed: it is emptied and run again.
 * Every stage runs the same mclip command a user would type, in this process.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, extname, join, relative, resolve } from 'node:path';
import { version_core as tfjsVersion } from '@tensorflow/tfjs-core';
import { createRequire } from 'node:module';
import { MclipError } from '../errors.js';
import { packageVersion } from '../cli/usage.js';
import { renderScatterSvg, renderTable, writeReport, type EvalReport, type EvalRow } from '../eval/index.js';
import { RecipeDocument } from './document.js';
import { parseRecipe } from './schema.js';
import { commandLine, planRecipe, type Plan, type PlannedStage } from './plan.js';
import { describePlan } from './dry-run.js';

/** Runs one mclip command line (the CLI's parser, in this process). */
export type CommandRunner = (argv: string[]) => Promise<void>;

export interface RunOptions {
  /** the run folder (default runs/NAME, NAME the recipe's name) */
  out?: string;
  resume?: boolean;
  dryRun?: boolean;
  /** run only this stage (its upstream stages must be finished) */
  only?: string;
  /** global flags passed to every stage's command (--backend, --quiet) */
  backend?: string;
  quiet?: boolean;
  env?: Readonly<Record<string, string | undefined>>;
  /** where progress lines go (default stderr) */
  log?: (line: string) => void;
}

export const MANIFEST_FORMAT = 'mclip-run';

interface StageRecord {
  name: string;
  kind: string;
  fingerprint: string;
  status: 'pending' | 'running' | 'done' | 'skipped' | 'failed';
  command: string | null;
  inputs: string[];
  output: string;
  seconds?: number;
  startedAt?: string;
  finishedAt?: string;
  error?: string;
}

interface Manifest {
  format: typeof MANIFEST_FORMAT;
  version: 1;
  recipe: { file: string; name: string; sha256: string };
  versions: { mclip: string; node: string; tfjs: string; onnxruntime: string | null };
  backend: string;
  seed: number;
  createdAt: string;
  updatedAt: string;
  stages: StageRecord[];
}

interface DoneMarker {
  fingerprint: string;
  output: string;
  seconds: number;
  finishedAt: string;
}

function atomicWrite(path: string, text: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

const rel = (root: string, p: string): string => (p.startsWith(root) ? relative(root, p) : p);

function readMarker(dir: string): DoneMarker | null {
  const p = join(dir, 'done.json');
  if (!existsSync(p)) return null;
  try {
    return JSON.parse(readFileSync(p, 'utf8')) as DoneMarker;
  } catch {
    return null;
  }
}

/** The table, report and plot of an eval stage from its per-model reports. */
function combineReports(st: PlannedStage, reports: EvalReport[], latency: boolean): string {
  const rows: EvalRow[] = reports.map((r, i) => ({ ...r.rows[0]!, name: st.compare![i]!.name }));
  const baselines = reports[0]?.baselines;
  const table = renderTable(rows, { baselines });
  writeReport(join(st.dir, 'report.json'), rows, { stage: st.name, models: st.compare!.map((c) => ({ name: c.name, path: c.ref.path ?? null, tokens: c.ref.tokens })), evals: reports.map((r) => r.meta) }, baselines);
  atomicWrite(join(st.dir, 'table.md'), table + '\n');
  atomicWrite(join(st.dir, 'pareto.svg'), renderScatterSvg(rows, { x: latency ? 'latency' : 'macs', y: 'top1', title: `${st.name}: zero-shot top-1 vs ${latency ? 'latency' : 'MACs'}` }));
  return table;
}

export class RecipeRun {
  readonly plan: Plan;
  private readonly log: (line: string) => void;
  private manifest!: Manifest;

  constructor(
    private readonly doc: RecipeDocument,
    plan: Plan,
    private readonly opts: RunOptions,
    private readonly exec: CommandRunner,
  ) {
    this.plan = plan;
    this.log = opts.log ?? ((l) => process.stderr.write(l + '\n'));
  }

  private get root(): string {
    return this.plan.root;
  }

  private globalFlags(): string[] {
    return [...(this.opts.backend ? ['--backend', this.opts.backend] : []), ...(this.opts.quiet ? ['--quiet'] : [])];
  }

  /**
   * Runs one stage command. Its stdout (a command's own table or JSON line) goes to stderr with its
   * progress: the stdout of `mclip run` is the final comparison table alone.
   */
  private async stage(argv: string[]): Promise<void> {
    const log = console.log;
    console.log = (...a: unknown[]) => console.error(...a);
    try {
      await this.exec(argv);
    } finally {
      console.log = log;
    }
  }

  private writeManifest(): void {
    this.manifest.updatedAt = new Date().toISOString();
    atomicWrite(join(this.root, 'manifest.json'), JSON.stringify(this.manifest, null, 2) + '\n');
  }

  private openFolder(): void {
    const manifestPath = join(this.root, 'manifest.json');
    const exists = existsSync(manifestPath);
    if (exists && !this.opts.resume && !this.opts.only) throw new MclipError(`${this.root} already holds a run (manifest.json): pass --resume to continue it, or choose another --out`);
    if (!exists && existsSync(this.root) && !this.opts.resume) {
      throw new MclipError(`${this.root} exists and is not a run folder of mclip run: choose another --out`);
    }
    mkdirSync(join(this.root, 'stages'), { recursive: true });
    const text = this.doc.text;
    const now = new Date().toISOString();
    this.manifest = {
      format: MANIFEST_FORMAT,
      version: 1,
      recipe: { file: resolve(this.doc.file), name: this.plan.recipe.name, sha256: createSha(text) },
      versions: { mclip: packageVersion(), node: process.version, tfjs: tfjsVersion, onnxruntime: onnxruntimeVersion() },
      backend: this.opts.backend ?? process.env.MCLIP_BACKEND ?? 'auto (the fastest that loads; each stage prints it)',
      seed: this.plan.recipe.seed,
      createdAt: exists ? ((JSON.parse(readFileSync(manifestPath, 'utf8')) as Manifest).createdAt ?? now) : now,
      updatedAt: now,
      stages: this.plan.stages.map((s) => ({
        name: s.name,
        kind: s.kind,
        fingerprint: s.fingerprint,
        status: 'pending',
        command: s.argv ? commandLine(s.argv, this.root) : null,
        inputs: [...s.after.map((a) => `@${a}`), ...(s.input?.path ? [s.input.path] : [])],
        output: rel(this.root, s.output),
      })),
    };
    copyFileSync(this.doc.file, join(this.root, 'recipe.yaml'));
    this.writeManifest();
  }

  /** Runs the stages in order; returns the table of the last eval stage (or '' when none ran). */
  async run(): Promise<string> {
    if (this.opts.only !== undefined && !this.plan.stages.some((s) => s.name === this.opts.only)) {
      throw new MclipError(`--only ${this.opts.only}: the recipe has no stage of that name (stages: ${this.plan.stages.map((s) => s.name).join(', ')})`);
    }
    this.openFolder();
    let table = '';
    const n = this.plan.stages.length;
    const t0 = Date.now();
    for (const [i, st] of this.plan.stages.entries()) {
      const rec = this.manifest.stages[i]!;
      const marker = readMarker(st.dir);
      const fresh = marker?.fingerprint === st.fingerprint;
      if (this.opts.only !== undefined && st.name !== this.opts.only) {
        if (!fresh && this.plan.stages.find((s) => s.name === this.opts.only)!.after.includes(st.name)) {
          throw new MclipError(`--only ${this.opts.only}: it reads stage '${st.name}', which has not finished with this recipe: run it first (or the whole recipe with --resume)`);
        }
        rec.status = fresh ? 'done' : 'pending';
        continue;
      }
      if (fresh && this.opts.only === undefined) {
        rec.status = 'skipped';
        rec.seconds = marker.seconds;
        this.log(`mclip run: [${i + 1}/${n}] ${st.name} (${st.kind}): done earlier, skipped`);
        if (st.kind === 'eval') table = readFileSync(join(st.dir, 'table.md'), 'utf8').trimEnd();
        continue;
      }
      if (existsSync(st.dir)) {
        this.log(`mclip run: [${i + 1}/${n}] ${st.name}: ${marker ? 'the recipe or an upstream stage changed' : 'unfinished'}: starting it again`);
        rmSync(st.dir, { recursive: true, force: true });
      }
      mkdirSync(st.dir, { recursive: true });
      rec.status = 'running';
      rec.startedAt = new Date().toISOString();
      this.writeManifest();
      const elapsed = (Date.now() - t0) / 1000;
      this.log(`mclip run: [${i + 1}/${n}] ${st.name} (${st.kind})${rec.command ? `: ${rec.command}` : ''}${elapsed > 1 ? ` — run time so far ${elapsed.toFixed(0)} s` : ''}`);
      const s0 = Date.now();
      try {
        const t = await this.runStage(st);
        if (t) table = t;
      } catch (e) {
        rec.status = 'failed';
        rec.error = e instanceof Error ? e.message : String(e);
        this.writeManifest();
        throw new MclipError(`stage '${st.name}' (${st.kind}) failed: ${rec.error} (its folder: ${st.dir}; fix the cause and rerun with --resume)`, { cause: e });
      }
      const seconds = (Date.now() - s0) / 1000;
      if (!existsSync(st.output)) throw new MclipError(`stage '${st.name}' (${st.kind}) finished without its output ${st.output}`);
      const done: DoneMarker = { fingerprint: st.fingerprint, output: rel(this.root, st.output), seconds, finishedAt: new Date().toISOString() };
      atomicWrite(join(st.dir, 'done.json'), JSON.stringify(done, null, 2) + '\n');
      Object.assign(rec, { status: 'done', seconds, finishedAt: done.finishedAt });
      this.writeManifest();
      this.log(`mclip run: [${i + 1}/${n}] ${st.name}: done in ${seconds.toFixed(1)} s`);
    }
    this.log(`mclip run: ${this.plan.recipe.name}: finished in ${((Date.now() - t0) / 1000).toFixed(1)} s → ${this.root}`);
    return table;
  }

  private async runStage(st: PlannedStage): Promise<string | undefined> {
    if (st.kind === 'tokens') {
      atomicWrite(st.output, JSON.stringify({ model: st.model!.path ?? null, tokens: st.model!.tokens }, null, 2) + '\n');
      return undefined;
    }
    if (st.kind === 'eval') return this.runEval(st);
    await this.stage([...this.globalFlags(), ...st.argv!]);
    return undefined;
  }

  /** One `mclip eval` per model (each with its own token flags), then one table, report and plot. */
  private async runEval(st: PlannedStage): Promise<string> {
    const reports: EvalReport[] = [];
    mkdirSync(join(st.dir, 'evals'), { recursive: true });
    for (const [i, c] of st.compare!.entries()) {
      if (!c.ref.path) throw new MclipError(`model '${c.name}' has no checkpoint`);
      const json = join(st.dir, 'evals', `${String(i).padStart(2, '0')}-${c.name}.json`);
      await this.stage([...this.globalFlags(), 'eval', '--model', `${c.name}=${c.ref.path}`, ...st.argv!.slice(1), ...c.ref.tokens, '--json', json]);
      reports.push(JSON.parse(readFileSync(json, 'utf8')) as EvalReport);
    }
    return combineReports(st, reports, st.options.latency !== false);
  }
}

/** The installed onnxruntime-node's version (null when it is not installed). */
function onnxruntimeVersion(): string | null {
  try {
    return (createRequire(import.meta.url)('onnxruntime-node/package.json') as { version: string }).version;
  } catch {
    return null;
  }
}

function createSha(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** Reads, checks and plans a recipe (no side effects). */
export function loadPlan(file: string, opts: Pick<RunOptions, 'out' | 'dryRun' | 'env'>): { doc: RecipeDocument; plan: Plan } {
  const doc = RecipeDocument.read(file);
  const recipe = parseRecipe(doc, basename(file, extname(file)));
  const root = resolve(opts.out ?? join('runs', recipe.name));
  return { doc, plan: planRecipe(doc, recipe, { root, dryRun: opts.dryRun, env: opts.env }) };
}

/** `mclip run RECIPE`: the plan (with --dry-run) or the run; prints the final table on stdout. */
export async function runRecipe(file: string, opts: RunOptions, exec: CommandRunner): Promise<void> {
  const { doc, plan } = loadPlan(file, opts);
  if (opts.dryRun) {
    console.log(await describePlan(plan));
    return;
  }
  const table = await new RecipeRun(doc, plan, opts, exec).run();
  if (table) console.log(table);
}
