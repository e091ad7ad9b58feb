/**
 * From a checked recipe to the plan `mclip run` carries out: every stage's command line, its inputs
 * (earlier stages by name, files outside the run) and its outputs inside the run folder, and its
 * fingerprint — a hash of the kind, the options, the fingerprints of the stages it reads and the contents
 * of the files it reads — so that a changed recipe re-runs exactly the stages downstream of the change.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import type { OptionTable } from '../cli/options.js';
import { TOKEN_OPTIONS } from '../cli/token-options.js';
import type { KeyPath, RecipeDocument } from './document.js';
import { KINDS, type Product, type StageKind } from './kinds.js';
import type { OptionValue, Recipe, RecipeStage } from './schema.js';

/** A model an earlier stage (or the recipe) provides: its checkpoint, and the token flags its evaluation applies. */
export interface ModelRef {
  /** the stage that made it ('model': the recipe model) */
  stage: string;
  /** the checkpoint (absent: a recipe model given by arch alone) */
  path?: string;
  /** token-reduction flags of `mclip eval` (a `tokens` stage sets them; later model stages keep them) */
  tokens: string[];
  fingerprint: string;
}

export interface PlannedStage {
  name: string;
  kind: StageKind;
  index: number;
  /** absolute folder of the finished stage */
  dir: string;
  /** `mclip` arguments, with paths inside `dir`; null for stages `mclip run` does itself */
  argv: string[] | null;
  produces: Product;
  /** the product's path (the model checkpoint, dataset folder, ONNX file or report.json) */
  output: string;
  /** the model this stage makes (model stages) */
  model?: ModelRef;
  /** the model the stage starts from */
  input?: ModelRef;
  /** eval stages: the models compared, baseline first */
  compare?: { name: string; ref: ModelRef }[];
  /** stages whose outputs this one reads */
  after: string[];
  fingerprint: string;
  /** options as resolved (for the manifest and --dry-run) */
  options: Record<string, OptionValue>;
}

export interface Plan {
  recipe: Recipe;
  root: string;
  stages: PlannedStage[];
  /** the recipe model as the table's first row (absent when the recipe model is only an arch) */
  baseline: ModelRef;
  /** ${VAR}s left unset (dry runs only: a run refuses them) */
  unresolved: string[];
}

export interface PlanOptions {
  /** the run folder */
  root: string;
  /** environment for ${VAR} (default process.env) */
  env?: Readonly<Record<string, string | undefined>>;
  /** a dry run: unset ${VAR}s and the files behind them are reported, not refused */
  dryRun?: boolean;
}

const sha = (s: string | Buffer): string => createHash('sha256').update(s).digest('hex');

/** Content identity of an input file or folder (folders: every file's relative path, size and, for small files, content hash). */
export function pathIdentity(p: string): string {
  const st = statSync(p);
  if (st.isFile()) return `file:${sha(readFileSync(p))}`;
  const h = createHash('sha256');
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const f = join(d, e.name);
      if (e.isDirectory()) walk(f);
      else if (e.isFile()) {
        const s = statSync(f);
        h.update(`${relative(p, f)}\0${s.size}\0${s.size <= 1 << 20 ? sha(readFileSync(f)) : ''}\n`);
      }
    }
  };
  walk(p);
  return `dir:${h.digest('hex')}`;
}

const ENV_RE = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

export class Planner {
  private readonly base: string;
  private readonly env: Readonly<Record<string, string | undefined>>;
  readonly unresolved: string[] = [];
  private readonly done = new Map<string, PlannedStage>();

  constructor(
    private readonly doc: RecipeDocument,
    private readonly recipe: Recipe,
    private readonly opts: PlanOptions,
  ) {
    this.base = dirname(resolve(recipe.file));
    this.env = opts.env ?? process.env;
  }

  /** `${VAR}` and `${VAR:-default}` in S; an unset VAR is an error at PATH (a dry run notes it instead). */
  interpolate(s: string, path: KeyPath): string {
    return s.replace(ENV_RE, (_m, name: string, dflt: string | undefined) => {
      const v = this.env[name];
      if (v !== undefined && v !== '') return v;
      if (dflt !== undefined) return dflt;
      if (this.opts.dryRun) {
        if (!this.unresolved.includes(name)) this.unresolved.push(name);
        return `\${${name}}`;
      }
      throw this.doc.error(path, `\${${name}} is not set in the environment`);
    });
  }

  /** S resolved against the recipe's folder; a path that starts with an unset variable (a dry run) stays as written. */
  private absolute(s: string): string {
    if (isAbsolute(s) || (s.startsWith('${') && this.unresolvedIn(s))) return s;
    return resolve(this.base, s);
  }

  private unresolvedIn(s: string): boolean {
    return /\$\{[A-Za-z_]/.test(s);
  }

  /** An input path of the recipe: @stage, or a file/folder relative to the recipe's folder that must exist. */
  private inputPath(raw: string, path: KeyPath, before: number): { path: string; identity: string; stage?: string } {
    if (raw.startsWith('@')) {
      const name = raw.slice(1);
      if (name === 'model') {
        if (!this.baseline.path) throw this.doc.error(path, `@model: the recipe model has no checkpoint`);
        return { path: this.baseline.path, identity: `ref:model:${this.baseline.fingerprint}` };
      }
      const st = this.done.get(name);
      if (!st) {
        const later = this.recipe.stages.find((s) => s.name === name);
        throw this.doc.error(path, later ? `@${name}: stage '${name}' comes later (stages run in order)` : `@${name}: no stage is named '${name}'`);
      }
      if (st.index >= before) throw this.doc.error(path, `@${name}: stage '${name}' comes later`);
      // a model stage's ref is its checkpoint (for a tokens stage: the checkpoint it runs, not tokens.json)
      return { path: st.model?.path ?? st.output, identity: `ref:${name}:${st.fingerprint}`, stage: name };
    }
    const s = this.interpolate(raw, path);
    const abs = this.absolute(s);
    if (this.unresolvedIn(s)) return { path: abs, identity: `unresolved:${s}` };
    if (!existsSync(abs)) throw this.doc.error(path, `no such file or folder: ${abs}`);
    return { path: abs, identity: pathIdentity(abs) };
  }

  private baselineRef?: ModelRef;
  get baseline(): ModelRef {
    if (this.baselineRef) return this.baselineRef;
    const m = this.recipe.model;
    let path: string | undefined;
    let identity = `arch:${m.arch ?? ''}`;
    if (m.checkpoint !== undefined) {
      const s = this.interpolate(m.checkpoint, ['model', 'checkpoint']);
      path = this.absolute(s);
      if (this.unresolvedIn(s)) identity = `unresolved:${s}`;
      else if (!existsSync(path)) throw this.doc.error(['model', 'checkpoint'], `no such file: ${path}`);
      else identity = pathIdentity(path);
    }
    this.baselineRef = { stage: 'model', ...(path ? { path } : {}), tokens: [], fingerprint: sha(`${identity}\0${m.arch ?? ''}`) };
    return this.baselineRef;
  }

  /** The model a stage starts from: `from`, else the latest model made before it, else the recipe model. */
  private inputModel(st: RecipeStage): ModelRef {
    if (st.from !== undefined) {
      if (st.from === 'model') return this.baseline;
      const prev = this.done.get(st.from);
      if (!prev) throw this.doc.error(['stages', st.index, 'from'], this.recipe.stages.some((s) => s.name === st.from) ? `stage '${st.from}' comes later` : `no stage is named '${st.from}'`);
      if (!prev.model) throw this.doc.error(['stages', st.index, 'from'], `stage '${st.from}' (${prev.kind}) makes no model`);
      return prev.model;
    }
    const models = [...this.done.values()].filter((s) => s.model);
    return models.length ? models[models.length - 1]!.model! : this.baseline;
  }

  /** The default dataset: the recipe's `data`, else the latest `data` stage. */
  private defaultData(st: RecipeStage, reinforced: boolean): string | undefined {
    if (reinforced) {
      const r = [...this.done.values()].filter((s) => s.kind === 'reinforce');
      if (r.length) return `@${r[r.length - 1]!.name}`;
    }
    if (this.recipe.data !== undefined) return this.recipe.data;
    const d = [...this.done.values()].filter((s) => s.kind === 'data');
    return d.length ? `@${d[d.length - 1]!.name}` : undefined;
  }

  plan(): Plan {
    const stages = this.recipe.stages.map((st) => this.planStage(st));
    return { recipe: this.recipe, root: this.opts.root, stages, baseline: this.baseline, unresolved: this.unresolved };
  }

  private planStage(st: RecipeStage): PlannedStage {
    const spec = KINDS[st.kind];
    const at: KeyPath = ['stages', st.index];
    const dir = join(this.opts.root, 'stages', st.name);
    const table: OptionTable = spec.options(st.source);
    const opts: Record<string, OptionValue> = { ...st.options };
    const identity: Record<string, unknown> = { kind: st.kind, source: st.source ?? null };
    const after = new Set<string>();
    const needsModel = ['train', 'inherit', 'distill', 'tokens', 'attention', 'finetune', 'export', 'reinforce'].includes(st.kind);
    const input = needsModel ? this.inputModel(st) : undefined;
    if (input && input.stage !== 'model') after.add(input.stage);

    // Inputs mclip run fills in.
    const fill = (key: string, value: string | undefined) => {
      if (value !== undefined && opts[key] === undefined && key in table) opts[key] = value;
    };
    const modelPath = (what: string): string => {
      if (!input?.path) throw this.doc.error(at, `a ${st.kind} stage needs a model: the recipe model has no checkpoint and no earlier stage made one (${what})`);
      return input.path;
    };
    if (spec.filled.includes('data')) fill('data', this.defaultData(st, opts.reinforced === true));
    if (spec.filled.includes('vocab')) fill('vocab', this.recipe.model.vocab);
    if (spec.filled.includes('seed')) opts.seed ??= this.recipe.seed;
    if (st.kind === 'train') {
      if (input?.path && opts.init === undefined && opts.arch === undefined) opts.init = `@${input.stage}`;
      else if (opts.init === undefined) fill('arch', this.recipe.model.arch);
    }
    if (st.kind === 'distill' || st.kind === 'finetune') {
      if (opts.init === undefined) opts.init = `@${input!.stage}`;
      if (opts.reinforced !== true && opts.teacher === undefined) {
        if (!this.baseline.path) throw this.doc.error(at, `needs a teacher: give 'teacher' (or 'reinforced: true'), or a checkpoint under model`);
        opts.teacher = '@model';
      }
    }
    if (st.kind === 'reinforce' && opts.teacher === undefined) opts.teacher = [`@${input!.stage}`];
    if (st.kind === 'attention') opts.attention ??= 'sigmoid';
    if (st.kind === 'export') opts.checkpoint ??= `@${input!.stage}`;

    // Resolve every path option (refs and files), building the argv and the identity side by side.
    const argv: string[] = [];
    const resolvedOpts: Record<string, OptionValue> = {};
    const pathKeys = new Set([...spec.paths, 'init', 'teacher', 'checkpoint', 'data', 'vocab'].filter((k) => k in table));
    for (const [key, raw] of Object.entries(opts)) {
      const o = table[key];
      if (!o) continue;
      const path: KeyPath = [...at, key];
      if (pathKeys.has(key)) {
        const values = Array.isArray(raw) ? raw.map(String) : [String(raw)];
        const res = values.map((v) => this.inputPath(v, path, st.index));
        res.forEach((r) => r.stage && after.add(r.stage));
        const paths = res.map((r) => r.path);
        resolvedOpts[key] = o.array ? paths : paths[0]!;
        identity[key] = res.map((r) => r.identity);
        argv.push(`--${key}`, ...paths);
        continue;
      }
      const value = typeof raw === 'string' ? this.interpolate(raw, path) : Array.isArray(raw) ? raw.map((v) => (typeof v === 'string' ? this.interpolate(v, path) : v)) : raw;
      resolvedOpts[key] = value;
      identity[key] = value;
      if (o.type === 'boolean') argv.push(value === true ? `--${key}` : `--no-${key}`);
      else argv.push(`--${key}`, ...(Array.isArray(value) ? value.map(String) : [String(value)]));
    }
    for (const [k, v] of Object.entries(spec.fixed ?? {})) {
      argv.push(`--${k}`, v);
      identity[k] = v;
    }
    // A fine-tune trains with the token reducers its model runs with: its own token keys, else its input's.
    let tuned: string[] | undefined;
    if (st.kind === 'finetune') {
      const own = Object.keys(TOKEN_OPTIONS).some((k) => resolvedOpts[k] !== undefined);
      if (own) {
        tuned = Object.keys(TOKEN_OPTIONS).flatMap((k) => (resolvedOpts[k] === undefined ? [] : [`--${k}`, String(resolvedOpts[k])]));
      } else if (input?.tokens.length) {
        tuned = input.tokens;
        argv.push(...tuned);
        identity.tokens = tuned;
      }
    }

    // Where the product goes, and the command line.
    let output: string;
    let command: string[] | null = spec.command(st.source) ? [...spec.command(st.source)!] : null;
    let model: ModelRef | undefined;
    const stageFp = (extra: unknown) => sha(JSON.stringify({ identity, extra, input: input?.fingerprint ?? null }));
    switch (st.kind) {
      case 'data':
      case 'reinforce':
        output = join(dir, 'out');
        argv.push('--out', output);
        break;
      case 'train':
        output = join(dir, 'out', 'model.safetensors');
        argv.push('--out', join(dir, 'out'));
        break;
      case 'inherit':
        output = join(dir, 'model.safetensors');
        argv.push('--from', modelPath('inherit --from'), '--out', output);
        break;
      case 'distill':
      case 'finetune': {
        const k = st.kind === 'finetune' ? 1 : this.distillStageCount(resolvedOpts, at);
        output = join(dir, 'out', `stage-${k}`, 'model.safetensors');
        argv.push('--out', join(dir, 'out'));
        break;
      }
      case 'attention':
        output = join(dir, 'model.safetensors');
        argv.unshift(modelPath('convert CHECKPOINT'));
        argv.push('--out', output);
        break;
      case 'tokens':
        output = join(dir, 'tokens.json');
        break;
      case 'export':
        output = join(dir, 'model.onnx');
        argv.push('--out', output);
        break;
      case 'eval':
        output = join(dir, 'report.json');
        break;
    }
    let compare: PlannedStage['compare'];
    if (st.kind === 'eval') {
      compare = this.compared(st);
      compare.forEach((c) => c.ref.stage !== 'model' && after.add(c.ref.stage));
      identity.compare = compare.map((c) => [c.name, c.ref.fingerprint]);
    }
    const fingerprint = stageFp({ command, after: [...after].sort().map((a) => this.done.get(a)!.fingerprint) });
    if (spec.produces === 'model') {
      const tokens = st.kind === 'tokens' ? argv.splice(0) : tuned ?? input?.tokens ?? [];
      model = { stage: st.name, path: st.kind === 'tokens' ? input!.path : output, tokens, fingerprint };
      if (st.kind === 'tokens') modelPath('tokens');
    }
    if (st.kind === 'tokens') command = null;
    const planned: PlannedStage = {
      name: st.name,
      kind: st.kind,
      index: st.index,
      dir,
      argv: command ? [...command, ...argv] : null,
      produces: spec.produces,
      output,
      ...(model ? { model } : {}),
      ...(input ? { input } : {}),
      ...(compare ? { compare } : {}),
      after: [...after],
      fingerprint,
      options: resolvedOpts,
    };
    this.done.set(st.name, planned);
    return planned;
  }

  /** Stages of a distill run: the --sparsity list's length, or the --stages file's. */
  private distillStageCount(opts: Record<string, OptionValue>, at: KeyPath): number {
    if (typeof opts.sparsity === 'string') return opts.sparsity.split(',').filter((s) => s.trim() !== '').length;
    if (typeof opts.stages === 'string') {
      if (this.unresolvedIn(opts.stages)) return 1;
      try {
        const j = JSON.parse(readFileSync(opts.stages, 'utf8')) as unknown;
        if (Array.isArray(j) && j.length > 0) return j.length;
      } catch {
        /* reported below */
      }
      throw this.doc.error([...at, 'stages'], `${opts.stages}: expected a JSON list of stages`);
    }
    throw this.doc.error(at, `a distill stage needs 'sparsity' or 'stages'`);
  }

  /** The models an eval stage compares: `models` by name, else the recipe model and every model made so far. */
  private compared(st: RecipeStage): { name: string; ref: ModelRef }[] {
    const out: { name: string; ref: ModelRef }[] = [];
    if (st.models) {
      st.models.forEach((n, i) => {
        if (n === 'model') {
          if (!this.baseline.path) throw this.doc.error(['stages', st.index, 'models', i], `the recipe model has no checkpoint`);
          out.push({ name: this.recipe.model.name, ref: this.baseline });
          return;
        }
        const s = this.done.get(n);
        if (!s) throw this.doc.error(['stages', st.index, 'models', i], this.recipe.stages.some((x) => x.name === n) ? `stage '${n}' comes later` : `no stage is named '${n}'`);
        if (!s.model) throw this.doc.error(['stages', st.index, 'models', i], `stage '${n}' (${s.kind}) makes no model`);
        out.push({ name: n, ref: s.model });
      });
      return out;
    }
    if (this.baseline.path) out.push({ name: this.recipe.model.name, ref: this.baseline });
    for (const s of this.done.values()) if (s.model) out.push({ name: s.name, ref: s.model });
    if (!out.length) throw this.doc.error(['stages', st.index], 'nothing to evaluate: no model comes before this stage');
    return out;
  }
}

/** Plans a checked recipe. */
export function planRecipe(doc: RecipeDocument, recipe: Recipe, opts: PlanOptions): Plan {
  return new Planner(doc, recipe, opts).plan();
}

/** ARGV as one shell line, with the paths inside ROOT relative to it (what the manifest and the dry run print). */
export function commandLine(argv: readonly string[], root: string): string {
  const quote = (a: string) => (a === '' ? "''" : /[\s'"$`\\]/.test(a) && !/^\$\{[A-Za-z_]\w*\}/.test(a) ? `'${a.replace(/'/g, `'\\''`)}'` : a);
  return ['mclip', ...argv.map((a) => quote(a.startsWith(root + '/') ? relative(root, a) : a))].join(' ');
}
