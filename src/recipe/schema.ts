/**
 * The recipe schema (zod), built from the commands' own flag tables: a stage of kind K takes exactly
 * the flags of K's command (same names, types and choices), less those `mclip run` sets itself. Every
 * problem becomes a RecipeError naming file, line and key path.
 */
import { z } from 'zod';
import type { CommandOption, OptionTable } from '../cli/options.js';
import type { KeyPath, RecipeDocument } from './document.js';
import { DATA_SOURCES, KINDS, STAGE_KEYS, STAGE_KINDS, type DataSource, type StageKind } from './kinds.js';

/** A value a stage option may hold once checked. */
export type OptionValue = string | number | boolean | (string | number)[];

export interface RecipeStage {
  name: string;
  kind: StageKind;
  /** the model the stage starts from (a stage name or `model`), when given */
  from?: string;
  /** the data builder of a `data` stage */
  source?: DataSource;
  /** the eval stage's models, when given */
  models?: string[];
  /** the stage's command flags as written (kebab-case keys) */
  options: Record<string, OptionValue>;
  /** index in `stages` */
  index: number;
}

export interface Recipe {
  file: string;
  name: string;
  seed: number;
  model: { checkpoint?: string; arch?: string; vocab?: string; name: string };
  data?: string;
  stages: RecipeStage[];
}

const show = (v: unknown): string => (typeof v === 'string' ? `'${v}'` : v === null ? 'nothing' : Array.isArray(v) ? 'a list' : typeof v === 'object' ? 'a mapping' : String(v));

/** The zod schema of one flag's value in a recipe. Strings also accept numbers (YAML reads `0.5` as a number). */
export function optionSchema(o: CommandOption): z.ZodType<OptionValue> {
  const item: z.ZodType<string | number | boolean> =
    o.type === 'number'
      ? z.number({ error: (iss) => `expected a number, got ${show(iss.input)}` }).refine(Number.isFinite, { message: 'expected a finite number' })
      : o.type === 'boolean'
        ? z.boolean({ error: (iss) => `expected true or false, got ${show(iss.input)}` })
        : z
            .union([z.string(), z.number()], { error: (iss) => `expected a string, got ${show(iss.input)}` })
            .transform((v) => String(v))
            .refine((v) => !o.choices || o.choices.includes(v), { message: `expected one of ${(o.choices ?? []).join(', ')}` });
  if (!o.array) return item;
  const arrayItem = item as z.ZodType<string | number>;
  return z.union([z.array(arrayItem), arrayItem], { error: (iss) => `expected a value or a list, got ${show(iss.input)}` }).transform((v) => (Array.isArray(v) ? v : [v]));
}

const TOP = z.strictObject({
  name: z.string({ error: 'expected a string' }).optional(),
  seed: z.number({ error: 'expected a number' }).int({ message: 'expected a whole number' }).optional(),
  model: z.strictObject({
    checkpoint: z.string({ error: 'expected a path' }).optional(),
    arch: z.string({ error: 'expected an architecture name' }).optional(),
    vocab: z.string({ error: 'expected a path' }).optional(),
    name: z.string({ error: 'expected a string' }).optional(),
  }, { error: 'expected a mapping (checkpoint, arch, vocab, name)' }),
  data: z.string({ error: 'expected a path or @stage' }).optional(),
  stages: z.array(z.record(z.string(), z.unknown(), { error: 'expected a mapping (name, kind and the kind\'s options)' }), { error: 'expected a list of stages' }).min(1, { message: 'expected at least one stage' }),
});

/** Maps zod issues to RecipeErrors at PREFIX + the issue path (unknown keys: one error per key). */
function firstError(doc: RecipeDocument, prefix: KeyPath, issues: readonly z.core.$ZodIssue[], unknownHint: (key: string) => string): Error {
  const iss = issues[0]!;
  const path = [...prefix, ...iss.path.filter((p): p is string | number => typeof p !== 'symbol')];
  if (iss.code === 'unrecognized_keys') {
    const key = iss.keys[0]!;
    return doc.error([...path, key], unknownHint(key));
  }
  return doc.error(path, iss.message);
}

function stageSchema(table: OptionTable, extra: OptionTable): z.ZodType<Record<string, unknown>> {
  const shape: Record<string, z.ZodType> = {};
  for (const [k, o] of Object.entries({ ...table, ...extra })) shape[k] = optionSchema(o).optional();
  shape.name = z.string({ error: 'expected a string' }).regex(/^[a-z0-9][a-z0-9_-]*$/i, { message: 'expected letters, digits, - and _ (it names a folder)' });
  shape.kind = z.string();
  shape.from = z.string({ error: 'expected a stage name' }).optional();
  return z.strictObject(shape) as z.ZodType<Record<string, unknown>>;
}

/** Reads and checks a recipe document (structure, types, names and kinds; references are checked by the planner). */
export function parseRecipe(doc: RecipeDocument, fileName: string): Recipe {
  const top = TOP.safeParse(doc.value ?? {});
  if (!top.success) {
    const keys = Object.keys(TOP.shape).join(', ');
    throw firstError(doc, [], top.error.issues, (k) => `unknown key '${k}' (a recipe has: ${keys})`);
  }
  const t = top.data;
  const names = new Set<string>(['model']);
  const stages: RecipeStage[] = t.stages.map((raw, index) => {
    const at: KeyPath = ['stages', index];
    const kind = raw.kind;
    if (typeof kind !== 'string' || !(STAGE_KINDS as readonly string[]).includes(kind)) {
      throw doc.error([...at, 'kind'], kind === undefined ? `missing (one of ${STAGE_KINDS.join(', ')})` : `unknown kind ${show(kind)} (one of ${STAGE_KINDS.join(', ')})`);
    }
    const spec = KINDS[kind as StageKind];
    if (typeof raw.name !== 'string') throw doc.error([...at, raw.name === undefined ? 'kind' : 'name'], raw.name === undefined ? 'the stage has no name' : `expected a string, got ${show(raw.name)}`);
    const source = kind === 'data' && typeof raw.source === 'string' && (DATA_SOURCES as readonly string[]).includes(raw.source) ? (raw.source as DataSource) : undefined;
    const table = spec.options(source);
    for (const m of spec.managed) if (m in raw && !(m in STAGE_KEYS)) throw doc.error([...at, m], `set by mclip run (the stage's folder or its input); leave it out`);
    for (const f of Object.keys(spec.fixed ?? {})) if (f in raw) throw doc.error([...at, f], `fixed by kind ${kind} (${f} = ${spec.fixed![f]})`);
    const allowed = Object.keys(table).filter((k) => !spec.managed.includes(k));
    const schema = stageSchema(Object.fromEntries(Object.entries(table).filter(([k]) => allowed.includes(k))), spec.extra ?? {});
    const r = schema.safeParse(raw);
    if (!r.success) {
      const known = [...Object.keys(STAGE_KEYS), ...Object.keys(spec.extra ?? {}), ...allowed].join(', ');
      throw firstError(doc, at, r.error.issues, (k) => `unknown key '${k}' for a ${kind} stage (it takes: ${known})`);
    }
    const v = r.data;
    const name = v.name as string;
    if (names.has(name)) throw doc.error([...at, 'name'], name === 'model' ? `'model' names the recipe model; choose another stage name` : `a stage named '${name}' comes earlier`);
    names.add(name);
    // Required flags the runner does not fill: the recipe must give them.
    for (const [k, o] of Object.entries(table)) {
      if (o.demandOption && !spec.managed.includes(k) && !spec.filled.includes(k) && v[k] === undefined) throw doc.error(at, `missing '${k}' (required by mclip ${spec.command(source)?.join(' ') ?? kind})`);
    }
    const options: Record<string, OptionValue> = {};
    for (const k of Object.keys(table)) if (v[k] !== undefined) options[k] = v[k] as OptionValue;
    return {
      name,
      kind: kind as StageKind,
      index,
      ...(typeof v.from === 'string' ? { from: v.from } : {}),
      ...(kind === 'data' ? { source: (v.source as DataSource | undefined) ?? 'emoji' } : {}),
      ...(Array.isArray(v.models) ? { models: v.models.map(String) } : {}),
      options,
    };
  });
  return {
    file: doc.file,
    name: t.name ?? fileName,
    seed: t.seed ?? 0,
    model: { ...t.model, name: t.model.name ?? 'baseline' },
    ...(t.data !== undefined ? { data: t.data } : {}),
    stages,
  };
}
