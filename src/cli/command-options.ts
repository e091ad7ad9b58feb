/**
 * Every command's flag table by its command words: what the recipe schema (src/recipe/schema.ts)
 * validates a stage against, and what the `--help` test checks against the registered commands.
 */
import type { OptionTable } from './options.js';
import { DATA_EMOJI_OPTIONS, DATA_FASHION_MNIST_OPTIONS } from './commands/data.js';
import { TRAIN_OPTIONS } from './commands/train.js';
import { REINFORCE_OPTIONS } from './commands/reinforce.js';
import { INHERIT_OPTIONS } from './commands/inherit.js';
import { DISTILL_OPTIONS } from './commands/distill.js';
import { EVAL_OPTIONS } from './commands/eval.js';
import { EXPORT_OPTIONS } from './commands/export.js';
import { CONVERT_OPTIONS } from './commands/convert.js';
import { EMBED_OPTIONS } from './commands/embed.js';

export const COMMAND_OPTIONS = {
  'data emoji': DATA_EMOJI_OPTIONS,
  'data fashion-mnist': DATA_FASHION_MNIST_OPTIONS,
  train: TRAIN_OPTIONS,
  reinforce: REINFORCE_OPTIONS,
  inherit: INHERIT_OPTIONS,
  distill: DISTILL_OPTIONS,
  eval: EVAL_OPTIONS,
  export: EXPORT_OPTIONS,
  convert: CONVERT_OPTIONS,
  embed: EMBED_OPTIONS,
} as const satisfies Readonly<Record<string, OptionTable>>;
