import yargs, { type Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { tokenizeCommand } from './commands/tokenize.js';
import { vocabCommand } from './commands/vocab.js';
import { embedCommand } from './commands/embed.js';
import { dataCommand } from './commands/data.js';
import { evalCommand } from './commands/eval.js';
import { exportCommand } from './commands/export.js';
import { trainCommand } from './commands/train.js';
import { reinforceCommand } from './commands/reinforce.js';
import { reportError, setDebug } from './run.js';

/** Builds the `mclip` command line (exported for tests). */
export function buildCli(argv: string[]): Argv {
  let y: Argv = yargs(argv)
    .scriptName('mclip')
    .option('backend', { type: 'string', describe: 'tfjs-node-gpu | tfjs-node | wasm | cpu (default: $MCLIP_BACKEND, else the fastest that loads)' })
    .option('debug', { type: 'boolean', default: false, describe: 'print stack traces' })
    .option('quiet', { type: 'boolean', default: false, describe: 'no progress or backend lines' })
    .middleware((a) => setDebug(Boolean(a.debug)))
    .strict()
    .demandCommand(1, 'name a command (see --help)')
    .recommendCommands()
    .help()
    .version(false)
    .wrap(Math.min(110, process.stdout.columns ?? 100))
    .exitProcess(false)
    .fail((msg, err) => {
      throw err ?? new UsageError(msg);
    });
  y = tokenizeCommand(y);
  y = vocabCommand(y);
  y = embedCommand(y);
  y = dataCommand(y);
  y = evalCommand(y);
  y = exportCommand(y);
  y = trainCommand(y);
  y = reinforceCommand(y);
  return y;
}

class UsageError extends Error {}

/** CLI entry: runs the command, prints one-line errors, sets the exit code. */
export async function main(argv: string[] = hideBin(process.argv)): Promise<void> {
  if (argv.includes('--debug')) setDebug(true);
  try {
    await buildCli(argv).parseAsync();
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`mclip: usage error: ${e.message} (see mclip --help)`);
      process.exitCode = 2;
      return;
    }
    reportError(e);
    process.exitCode = 1;
  }
}
