import type { Argv } from 'yargs';
import { runRecipe, type CommandRunner } from '../../recipe/run.js';
import { withOptions, type OptionTable } from '../options.js';

export const RUN_OPTIONS = {
  out: { type: 'string', describe: 'run folder (default runs/NAME, NAME the recipe name or file name)' },
  resume: { type: 'boolean', default: false, describe: 'continue the run in --out: finished stages whose recipe (and upstream) did not change are skipped' },
  'dry-run': { type: 'boolean', default: false, describe: 'check the recipe and print the plan with each model’s size and MACs; run and write nothing' },
  only: { type: 'string', describe: 'run only this stage (the stages it reads must have finished)' },
} as const satisfies OptionTable;

/** `mclip run RECIPE.yaml`; EXEC runs each stage's command line through the CLI's own parser. */
export function runCommand(y: Argv, exec: CommandRunner): Argv {
  return y.command(
    'run <recipe>',
    'run a YAML recipe: its stages in order under one run folder, then one comparison table (recipes/)',
    (a) => withOptions(a.positional('recipe', { type: 'string', demandOption: true, describe: 'the recipe (YAML)' }), RUN_OPTIONS),
    (args) =>
      runRecipe(args.recipe, { out: args.out, resume: args.resume, dryRun: args.dryRun, only: args.only, backend: typeof args.backend === 'string' ? args.backend : undefined, quiet: args.quiet === true }, exec),
  );
}
