/**
 * A user-facing error: the CLI prints its message on one line (no stack trace unless --debug)
 * and exits non-zero. Messages must say what was wrong and where (file, key, expected vs got).
 */
export class MclipError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'MclipError';
  }
}

/** Throws an MclipError when `cond` is false. */
export function check(cond: unknown, message: string | (() => string)): asserts cond {
  if (!cond) throw new MclipError(typeof message === 'function' ? message() : message);
}
