/**
 * Helpers for the CLI tests: they spawn the BUILT command (`node bin/mclip.js …` → dist/src/cli/main.js) with
 * MCLIP_BACKEND=wasm, so `dist/` must be built first (`npm test` runs tsc before vitest).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { ExpectStatic } from 'vitest';

import { ROOT } from '../paths.js';

export const CLI = join(ROOT, 'bin', 'mclip.js');
export const CLI_BUILT = existsSync(join(ROOT, 'dist', 'src', 'cli', 'main.js'));

export interface CliResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface RunOptions {
  /** Extra environment; `undefined` removes a variable. MCLIP_VOCAB is removed unless given here. */
  env?: Record<string, string | undefined>;
  timeoutMs?: number;
}

/** Runs `node bin/mclip.js ...args` in the repository root (async, so several can run at once). */
export function runCli(args: string[], opts: RunOptions = {}): Promise<CliResult> {
  if (!CLI_BUILT) throw new Error('dist/ is not built: run `npx tsc -p tsconfig.json` first');
  const env: Record<string, string | undefined> = { ...process.env, MCLIP_BACKEND: 'wasm' };
  delete env.MCLIP_VOCAB;
  for (const [k, v] of Object.entries(opts.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  const t0 = Date.now();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: ROOT,
      env: env as NodeJS.ProcessEnv,
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: opts.timeoutMs ?? 90_000,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (status, signal) => resolve({ status, signal, stdout, stderr, ms: Date.now() - t0 }));
  });
}

/** Non-empty stderr lines, without the informational `mclip: backend …` line. */
export function errorLines(stderr: string): string[] {
  return stderr
    .split(/\r?\n/)
    .filter((l) => l.trim().length > 0)
    .filter((l) => !l.startsWith('mclip: backend '));
}

/** A stack frame line as V8 prints it. */
export const STACK_FRAME = /^\s+at \S/m;

/** Describes a result for assertion messages. */
export function show(r: CliResult): string {
  return `exit ${r.status} (signal ${r.signal}) after ${r.ms} ms\n--- stdout ---\n${r.stdout}\n--- stderr ---\n${r.stderr}`;
}

/**
 * Asserts the CLI's error contract: exit `code`, nothing on stdout, exactly one stderr line (besides
 * `mclip: backend …`) starting `mclip: error: ` (`mclip: usage error: ` for exit 2) and matching `pattern`, no stack.
 */
export function expectOneLineError(expect: ExpectStatic, r: CliResult, pattern: RegExp, code = 1): void {
  expect(r.status, show(r)).toBe(code);
  expect(r.stdout, show(r)).toBe('');
  const lines = errorLines(r.stderr);
  expect(lines, show(r)).toHaveLength(1);
  expect(lines[0]).toMatch(code === 2 ? /^mclip: usage error: / : /^mclip: error: /);
  expect(lines[0]).toMatch(pattern);
  expect(r.stderr).not.toMatch(STACK_FRAME);
}

/** A temporary folder, removed by the returned cleanup function. */
export function tempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `mclip-cli-${prefix}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Deterministic xorshift32 in [0, 1). */
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

/**
 * A caption corpus rich enough for ≥ 510 BPE merges: real caption words plus seeded pseudo-words made of
 * consonant-vowel syllables (so there are many distinct frequent pairs).
 */
export function syntheticCorpus(lines = 1500, seed = 11): string[] {
  const r = rng(seed);
  const pick = <T>(a: readonly T[]): T => a[Math.floor(r() * a.length)];
  const C = 'bcdfghjklmnprstvwz';
  const V = 'aeiou';
  const pseudo = Array.from({ length: 400 }, () => {
    const n = 1 + Math.floor(r() * 4);
    let w = '';
    for (let i = 0; i < n; i++) w += pick([...C]) + pick([...V]) + (r() < 0.3 ? pick([...C]) : '');
    return w;
  });
  const words = ['a', 'photo', 'of', 'the', 'dog', 'cat', 'on', 'in', 'red', 'blue', 'green', 'house', 'street', 'tree', ...pseudo];
  return Array.from({ length: lines }, () => {
    const n = 3 + Math.floor(r() * 8);
    return Array.from({ length: n }, () => pick(words)).join(' ');
  });
}
