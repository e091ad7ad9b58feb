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
import { inheritCommand } from './commands/inherit.js';
import { distillCommand } from './commands/distill.js';
import { convertCommand } from './commands/convert.js';
import { mergeResultsCommand } from './commands/merge-results.js';
import { runCommand } from './commands/run.js';
// Plug-in attention kernels a checkpoint's config may name: registered (kernel, ONNX form, MACs) at import.
import '../sigmoid-attn/index.js';
import { reportError, setDebug } from './run.js';
import { checkCommand, checkNumbers, cleanYargsMessage, helpPointer, packageVersion, UsageError, type CommandTable } from './usage.js';

/** Every command and its subcommands, in the order `mclip --help` lists them. */
const COMMANDS: readonly { name: string; subcommands: readonly string[]; register: (y: Argv) => Argv }[] = [
  { name: 'tokenize', subcommands: [], register: tokenizeCommand },
  { name: 'vocab', subcommands: ['train'], register: vocabCommand },
  { name: 'embed', subcommands: [], register: embedCommand },
  { name: 'data', subcommands: ['emoji', 'fashion-mnist'], register: dataCommand },
  { name: 'eval', subcommands: [], register: evalCommand },
  { name: 'export', subcommands: [], register: exportCommand },
  { name: 'train', subcommands: [], register: trainCommand },
  { name: 'reinforce', subcommands: [], register: reinforceCommand },
  { name: 'inherit', subcommands: [], register: inheritCommand },
  { name: 'distill', subcommands: [], register: distillCommand },
  { name: 'convert', subcommands: [], register: convertCommand },
  { name: 'merge-results', subcommands: [], register: mergeResultsCommand },
  // A recipe's stages are command lines of this same CLI, parsed and run in this process.
  { name: 'run', subcommands: [], register: (y) => runCommand(y, (argv) => buildCli(argv).parseAsync().then(() => undefined)) },
];

export const COMMAND_TABLE: CommandTable = Object.fromEntries(COMMANDS.map((c) => [c.name, c.subcommands]));

/** Builds the `mclip` command line (exported for tests). */
export function buildCli(argv: string[]): Argv {
  let y: Argv = yargs(argv)
    .scriptName('mclip')
    .option('backend', { type: 'string', describe: 'tfjs-node-gpu | tfjs-node | wasm | cpu (default: $MCLIP_BACKEND, else the fastest that loads)' })
    .option('debug', { type: 'boolean', default: false, describe: 'print stack traces' })
    .option('quiet', { type: 'boolean', default: false, describe: 'no progress or backend lines' })
    .middleware((a) => setDebug(Boolean(a.debug)))
    .middleware((a) => checkNumbers(a, argv), true)
    .strict()
    .demandCommand(1, 'name a command')
    .help()
    .version(packageVersion())
    .wrap(Math.min(110, process.stdout.columns ?? 100))
    .exitProcess(false)
    .fail((msg, err) => {
      throw err ?? new UsageError(cleanYargsMessage(msg, argv));
    });
  for (const c of COMMANDS) y = c.register(y);
  return y;
}

/** CLI entry: runs the command, prints one-line errors, sets the exit code (1 error, 2 usage error). */
export async function main(argv: string[] = hideBin(process.argv)): Promise<void> {
  if (argv.includes('--debug')) setDebug(true);
  try {
    checkCommand(argv, COMMAND_TABLE);
    await buildCli(argv).parseAsync();
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`mclip: usage error: ${e.message} (see ${helpPointer(argv, COMMAND_TABLE)})`);
      process.exitCode = 2;
      return;
    }
    reportError(e);
    process.exitCode = 1;
  }
}
