/**
 * Runs `mclip …` inside the test process (the CLI's `main`, with stdout/stderr captured and the exit code
 * read back): milliseconds per call instead of a node start-up, for tests of argument handling. One call at
 * a time (the capture is global); spawn the built CLI (helpers.ts runCli) where a real process matters.
 */
import { format } from 'node:util';
import { vi } from 'vitest';

import { main } from '../../src/cli/main.js';
import type { CliResult } from './helpers.js';

let queue: Promise<unknown> = Promise.resolve();

export function runMain(args: string[], env: Record<string, string | undefined> = { MCLIP_BACKEND: 'wasm' }): Promise<CliResult> {
  const run = async (): Promise<CliResult> => {
    const out: string[] = [];
    const err: string[] = [];
    const saved = new Map(Object.keys(env).map((k) => [k, process.env[k]]));
    for (const [k, v] of Object.entries(env)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    const spies = [
      vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void out.push(format(...a) + '\n')),
      vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => void err.push(format(...a) + '\n')),
      vi.spyOn(process.stdout, 'write').mockImplementation((c: string | Uint8Array) => (out.push(String(c)), true)),
      vi.spyOn(process.stderr, 'write').mockImplementation((c: string | Uint8Array) => (err.push(String(c)), true)),
    ];
    const savedCode = process.exitCode;
    process.exitCode = undefined;
    const t0 = Date.now();
    try {
      await main(args);
    } finally {
      for (const s of spies) s.mockRestore();
      for (const [k, v] of saved) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
    const status = Number(process.exitCode ?? 0);
    process.exitCode = savedCode;
    return { status, signal: null, stdout: out.join(''), stderr: err.join(''), ms: Date.now() - t0 };
  };
  const p = queue.then(run, run);
  queue = p.catch(() => undefined);
  return p;
}
