import { MclipError } from '../errors.js';
import { initBackend, type BackendInfo } from '../base/backend/index.js';

/** Global flags shared by every command. */
export interface GlobalArgs {
  backend?: string;
  debug?: boolean;
  quiet?: boolean;
}

let debugMode = false;

export function setDebug(flag: boolean): void {
  debugMode = flag;
}

/** Prints an error the way the CLI promises: one line, no stack unless --debug. */
export function reportError(e: unknown): void {
  if (debugMode) {
    console.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
    return;
  }
  const msg = e instanceof Error ? e.message : String(e);
  const oneLine = msg.replace(/\s*\n\s*/g, ' ').trim();
  const prefix = e instanceof MclipError ? 'mclip: error: ' : 'mclip: internal error: ';
  console.error(prefix + oneLine + (e instanceof MclipError ? '' : ' (run with --debug for the stack trace)'));
}

/** Starts the tensor backend for a command (prints which one runs). */
export async function startBackend(args: GlobalArgs, opts: { gradients?: boolean } = {}): Promise<BackendInfo> {
  return initBackend({ backend: args.backend, quiet: args.quiet, gradients: opts.gradients ?? false });
}
