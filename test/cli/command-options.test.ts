/**
 * One flag table per command (src/cli/command-options.ts) is what both the CLI registers and the
 * recipe schema validates against: every option of each table shows in the command's --help with its
 * default and choices, and the registered commands take no option the table lacks.
 */
import { describe, expect, it } from 'vitest';

import { COMMAND_OPTIONS } from '../../src/cli/command-options.js';
import type { OptionTable } from '../../src/cli/options.js';
import { runMain } from './in-process.js';

/** Flags every command gets from the top level (not in a command's table). */
const GLOBAL = ['backend', 'debug', 'quiet', 'help', 'version'];

/** The `--flag` names listed under the options of a --help page. */
function helpFlags(help: string): string[] {
  return [...help.matchAll(/^\s+--([a-z][a-z0-9-]*)/gm)].map((m) => m[1]!);
}

describe('command option tables', () => {
  for (const [words, table] of Object.entries(COMMAND_OPTIONS) as [string, OptionTable][]) {
    it(`mclip ${words} --help lists exactly its table's options`, async () => {
      const r = await runMain([...words.split(' '), '--help']);
      expect(r.status, r.stderr).toBe(0);
      const listed = helpFlags(r.stdout).filter((f) => !GLOBAL.includes(f));
      expect(new Set(listed)).toEqual(new Set(Object.keys(table)));
      for (const [name, o] of Object.entries(table)) {
        const line = r.stdout.split('\n').findIndex((l) => new RegExp(`^\\s+--${name}\\b`).test(l));
        // yargs wraps an option's description over the next lines; its [default] / [choices] follow it
        const block = r.stdout.split('\n').slice(line, line + 6).join(' ');
        if (o.default !== undefined && typeof o.default !== 'boolean') expect(block, name).toContain(`[default: ${typeof o.default === 'string' ? `"${o.default}"` : o.default}]`);
        if (o.demandOption) expect(block, name).toContain('[required]');
        if (o.choices) expect(block, name).toContain(`[choices: ${o.choices.map((c) => `"${c}"`).join(', ')}]`);
      }
    });
  }

  it('eval takes the token flags of the tokens stage', () => {
    for (const f of ['text-padding', 'prune-layers', 'keep', 'merge-layers', 'merge']) expect(Object.keys(COMMAND_OPTIONS.eval)).toContain(f);
  });
});
