import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { MclipError } from '../../errors.js';

/**
 * Writes `path` atomically: `write` gets a function that appends bytes to a temporary file in the same
 * folder, which is then fsynced and renamed onto `path`; on failure the temporary file is removed and the
 * error (an MclipError as it is, anything else as `PATH: cannot write WHAT (code)`) rethrown. Returns the
 * bytes written.
 */
export function writeFileAtomic(path: string, what: string, write: (append: (bytes: Uint8Array) => void) => void): number {
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`);
  let fd: number | undefined;
  let size = 0;
  try {
    fd = openSync(tmp, 'wx');
    const out = fd;
    write((b) => {
      let done = 0;
      while (done < b.byteLength) done += writeSync(out, b, done, b.byteLength - done);
      size += b.byteLength;
    });
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
    return size;
  } catch (e) {
    if (fd !== undefined) closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      /* not created, or already gone */
    }
    if (e instanceof MclipError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw new MclipError(`${path}: cannot write ${what} (${code ?? String(e)})`, { cause: e });
  }
}
