/**
 * Command-line conventions shared by every command: which command (and subcommand) a command line
 * names, the usage-error type, and the clean-ups of yargs' messages (unknown options listed once,
 * non-numeric numbers echoed as typed).
 */
import { readFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** A mistake in how the command was called: printed with a pointer to the command's --help, exit 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** The commands `mclip` knows, with their subcommands (kept beside the registrations in main.ts). */
export type CommandTable = Readonly<Record<string, readonly string[]>>;

/** Global options that take a value (so the word after them is not the command). */
const GLOBAL_VALUE_OPTIONS = new Set(['--backend']);

/** Where the command word is in a command line (after global options), or -1 when none is named. */
function commandIndex(argv: readonly string[]): number {
  let i = 0;
  while (i < argv.length && argv[i]!.startsWith('-')) {
    if (argv[i] === '--') return -1;
    i += GLOBAL_VALUE_OPTIONS.has(argv[i]!) ? 2 : 1;
  }
  return i < argv.length ? i : -1;
}

/** The command words of a command line: `['vocab', 'train']`, `['eval']`, or `[]` when none is named. */
export function commandWords(argv: readonly string[], table: CommandTable): string[] {
  const i = commandIndex(argv);
  if (i < 0) return [];
  const cmd = argv[i]!;
  const sub = argv[i + 1];
  return sub !== undefined && (table[cmd] ?? []).includes(sub) ? [cmd, sub] : [cmd];
}

/** Checks that the named command exists before yargs sees it (yargs would print the global help for `mclip run --help`). */
export function checkCommand(argv: readonly string[], table: CommandTable): void {
  const i = commandIndex(argv);
  if (i < 0) return;
  const cmd = argv[i]!;
  const subs = table[cmd];
  if (subs === undefined) throw new UsageError(`unknown command '${cmd}' (commands: ${Object.keys(table).join(', ')})`);
  const next = argv[i + 1];
  if (subs.length > 0 && next !== undefined && !next.startsWith('-') && !subs.includes(next)) {
    throw new UsageError(`unknown ${cmd} subcommand '${next}' (expected ${subs.join(', ')})`);
  }
}

/** Where a usage error points the user: `mclip vocab train --help`, `mclip --help`. */
export function helpPointer(argv: readonly string[], table: CommandTable): string {
  const words = commandWords(argv, table).filter((w, i) => (i === 0 ? w in table : true));
  return ['mclip', ...words, '--help'].join(' ');
}

const kebab = (s: string): string => s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

/**
 * Rewrites yargs' messages: "Unknown arguments: bogus-flag, bogusFlag" → "unknown option --bogus-flag"
 * (each option once, with its dashes); "Unknown argument: foo" (a stray word) stays recognisable.
 */
export function cleanYargsMessage(msg: string, rawArgs: readonly string[]): string {
  const req = /^Missing required arguments?: (.*)$/s.exec(msg.trim());
  if (req) {
    const names = req[1]!.split(/,\s*/).filter(Boolean).map((n) => `--${kebab(n)}`);
    return `missing required option${names.length > 1 ? 's' : ''} ${names.join(', ')}`;
  }
  const inv = /^Invalid values:\s*Argument: ([^,]+), Given: (.*), Choices: (.*)$/s.exec(msg.trim());
  if (inv) {
    const unquote = (v: string) => v.trim().replace(/^"(.*)"$/s, '$1');
    const choices = inv[3]!.split(/,\s*/).map(unquote);
    return `--${kebab(inv[1]!.trim())}: expected one of ${choices.join(', ')}, got '${unquote(inv[2]!)}'`;
  }
  const m = /^Unknown arguments?: (.*)$/s.exec(msg.trim());
  if (!m) return msg;
  const names = m[1]!.split(/,\s*/).filter(Boolean);
  const kept: string[] = [];
  for (const n of names) {
    const k = kebab(n);
    if (k !== n && names.includes(k)) continue; // yargs' camelCase twin of a kebab option
    if (!kept.includes(n)) kept.push(n);
  }
  const asOption = (n: string) => rawArgs.some((a) => a === `--${n}` || a.startsWith(`--${n}=`) || a === `-${n}`);
  const options = kept.filter(asOption);
  const words = kept.filter((n) => !asOption(n));
  const parts: string[] = [];
  if (options.length) parts.push(`unknown option${options.length > 1 ? 's' : ''} ${options.map((n) => (n.length === 1 ? `-${n}` : `--${n}`)).join(', ')}`);
  if (words.length) parts.push(`unexpected argument${words.length > 1 ? 's' : ''} ${words.map((w) => `'${w}'`).join(', ')}`);
  return parts.length ? parts.join('; ') : msg;
}

/** The text typed after `--name` (or `--name=`), in kebab or camel spelling; undefined when absent. */
export function rawOptionValues(argv: readonly string[], key: string): string[] {
  const spellings = new Set([key, kebab(key)]);
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') break;
    if (!a.startsWith('--')) continue;
    const eq = a.indexOf('=');
    const name = a.slice(2, eq < 0 ? undefined : eq);
    if (!spellings.has(name)) continue;
    if (eq >= 0) out.push(a.slice(eq + 1));
    else if (i + 1 < argv.length) out.push(argv[i + 1]!);
  }
  return out;
}

/**
 * After parsing: a number option whose text was not a number (yargs gives NaN) is a usage error that
 * echoes what was typed: `--steps: expected a number, got 'abc'`.
 */
export function checkNumbers(parsed: Record<string, unknown>, argv: readonly string[]): void {
  for (const [key, v] of Object.entries(parsed)) {
    if (key === '_' || key === '$0' || /[A-Z]/.test(key)) continue; // the kebab spelling reports it
    const values = Array.isArray(v) ? v : [v];
    if (!values.some((x) => typeof x === 'number' && Number.isNaN(x))) continue;
    const typed = rawOptionValues(argv, key).find((s) => Number.isNaN(Number(s)) || s.trim() === '');
    throw new UsageError(`--${kebab(key)}: expected a number, got ${typed === undefined ? 'nothing' : `'${typed}'`}`);
  }
}

/** The package version, read from the package.json above this file (src/ or dist/src/). */
export function packageVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const p = join(dir, 'package.json');
    if (existsSync(p)) {
      const pkg = JSON.parse(readFileSync(p, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'mclip' && pkg.version) return pkg.version;
    }
    dir = dirname(dir);
  }
  return 'unknown';
}
