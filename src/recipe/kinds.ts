/**
 * The stage kinds of a recipe: the command each runs, the options it takes (the command's own flag
 * table, so a recipe key is the flag's name), which of them `mclip run` fills in (inputs default to the
 * earlier stages' outputs; `--out` is always the stage's folder) and what the stage leaves behind.
 */
import { COMMAND_OPTIONS } from '../cli/command-options.js';
import type { CommandOption, OptionTable } from '../cli/options.js';
import { TOKEN_OPTIONS } from '../cli/token-options.js';

export const STAGE_KINDS = ['data', 'train', 'reinforce', 'inherit', 'distill', 'tokens', 'attention', 'finetune', 'eval', 'export'] as const;
export type StageKind = (typeof STAGE_KINDS)[number];

/** What a finished stage leaves in its folder. */
export type Product =
  /** a dataset folder (mclip data, mclip reinforce) */
  | 'data'
  /** a checkpoint, possibly with token-reduction settings that evaluation applies */
  | 'model'
  /** an ONNX file */
  | 'onnx'
  /** the comparison table: table.md, report.json, pareto.svg */
  | 'report';

export const DATA_SOURCES = ['emoji', 'fashion-mnist'] as const;
export type DataSource = (typeof DATA_SOURCES)[number];

export interface KindSpec {
  /** the mclip command words (null: `mclip run` does the stage itself) */
  command: (source?: DataSource) => readonly string[] | null;
  /** the command's flag table (the recipe keys of the stage) */
  options: (source?: DataSource) => OptionTable;
  /** keys `mclip run` sets itself: a recipe that sets them is refused */
  managed: readonly string[];
  /** keys `mclip run` fills in when the recipe leaves them out (so they are not required) */
  filled: readonly string[];
  /** keys that name files or folders: relative paths resolve against the recipe's folder, `@stage` names an earlier stage's output */
  paths: readonly string[];
  /** keys of the stage that are not command flags (read by `mclip run` itself) */
  extra?: OptionTable;
  /** keys fixed by the kind (e.g. finetune = distill at sparsity 0) */
  fixed?: Readonly<Record<string, string>>;
  produces: Product;
}

/** Keys a stage of any kind may have besides its command's options. */
export const STAGE_KEYS: Readonly<Record<string, CommandOption & { describe: string }>> = {
  name: { type: 'string', describe: 'the stage name: its folder, and how later stages refer to its output (@name)' },
  kind: { type: 'string', choices: STAGE_KINDS, describe: 'what the stage does' },
  from: { type: 'string', describe: 'the model the stage starts from: an earlier stage (default: the latest model), or `model` for the recipe model' },
};

const without = (t: OptionTable, keys: readonly string[]): OptionTable => Object.fromEntries(Object.entries(t).filter(([k]) => !keys.includes(k)));

export const KINDS: Readonly<Record<StageKind, KindSpec>> = {
  data: {
    command: (source) => ['data', source ?? 'emoji'],
    options: (source) => (source === 'fashion-mnist' ? COMMAND_OPTIONS['data fashion-mnist'] : COMMAND_OPTIONS['data emoji']),
    managed: ['out'],
    filled: [],
    paths: ['idx'],
    extra: { source: { type: 'string', choices: DATA_SOURCES, default: 'emoji', describe: 'which dataset builder (mclip data SOURCE)' } },
    produces: 'data',
  },
  train: {
    command: () => ['train'],
    options: () => COMMAND_OPTIONS.train,
    managed: ['out', 'resume', 'force', 'stop-after'],
    filled: ['data', 'vocab', 'init', 'arch', 'seed'],
    paths: ['data', 'vocab', 'init'],
    produces: 'model',
  },
  reinforce: {
    command: () => ['reinforce'],
    options: () => COMMAND_OPTIONS.reinforce,
    managed: ['out', 'shard'],
    filled: ['data', 'vocab', 'teacher', 'seed'],
    paths: ['data', 'vocab', 'teacher'],
    produces: 'data',
  },
  inherit: {
    command: () => ['inherit'],
    options: () => COMMAND_OPTIONS.inherit,
    managed: ['out', 'from'],
    filled: [],
    paths: [],
    produces: 'model',
  },
  distill: {
    command: () => ['distill'],
    options: () => COMMAND_OPTIONS.distill,
    managed: ['out'],
    filled: ['data', 'vocab', 'init', 'teacher', 'seed'],
    paths: ['data', 'vocab', 'init', 'teacher', 'stages'],
    produces: 'model',
  },
  tokens: {
    command: () => null,
    options: () => TOKEN_OPTIONS,
    managed: [],
    filled: [],
    paths: [],
    produces: 'model',
  },
  attention: {
    command: () => ['convert'],
    options: () => without(COMMAND_OPTIONS.convert, ['to', 'dtype']),
    managed: ['out'],
    filled: ['attention'],
    paths: [],
    produces: 'model',
  },
  finetune: {
    command: () => ['distill'],
    options: () => without(COMMAND_OPTIONS.distill, ['sparsity', 'stages', 'towers', 'image-channels', 'mask-fraction', 'warmup-fraction', 'form']),
    managed: ['out'],
    filled: ['data', 'vocab', 'init', 'teacher', 'seed'],
    paths: ['data', 'vocab', 'init', 'teacher'],
    fixed: { sparsity: '0' },
    produces: 'model',
  },
  eval: {
    command: () => ['eval'],
    options: () => without(COMMAND_OPTIONS.eval, ['model', 'json', 'plot', 'shard', ...Object.keys(TOKEN_OPTIONS)]),
    managed: ['model', 'json', 'plot', 'shard'],
    extra: { models: { type: 'string', array: true, describe: 'stages whose models to compare (default: the recipe model and every model made before this stage)' } },
    filled: ['data', 'vocab'],
    paths: ['data', 'vocab'],
    produces: 'report',
  },
  export: {
    command: () => ['export'],
    options: () => COMMAND_OPTIONS.export,
    managed: ['out'],
    filled: ['checkpoint'],
    paths: ['checkpoint'],
    produces: 'onnx',
  },
};
