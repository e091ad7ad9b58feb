/**
 * Why the native TensorFlow backend (the optional @tensorflow/tfjs-node[-gpu]) is not in use, for the
 * backend line of an automatic choice; and the hint on how to get it, shown once per machine and
 * reason (a marker file in mclip's cache folder), not on every call.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';

export const NATIVE_PACKAGE = '@tensorflow/tfjs-node';
export const NATIVE_GPU_PACKAGE = '@tensorflow/tfjs-node-gpu';

/** mclip's cache folder: $MCLIP_CACHE_DIR, else $XDG_CACHE_HOME/mclip, else ~/.cache/mclip. */
export function cacheDir(): string {
  if (process.env.MCLIP_CACHE_DIR) return process.env.MCLIP_CACHE_DIR;
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'mclip');
}

function notInstalled(reason: string): boolean {
  return /Cannot find (package|module)|ERR_MODULE_NOT_FOUND|MODULE_NOT_FOUND/i.test(reason);
}

/** The short reason for the backend line, from the failure of loading @tensorflow/tfjs-node. */
export function nativeReason(reason: string): string {
  if (notInstalled(reason)) return `${NATIVE_PACKAGE} is not installed`;
  return `${NATIVE_PACKAGE} is installed but did not load (${reason.length > 120 ? `${reason.slice(0, 117)}...` : reason})`;
}

/** How to get the native backend, given why loading it failed. */
export function nativeHint(reason: string): string {
  const approve = `npm install-scripts approve ${NATIVE_PACKAGE}`;
  if (notInstalled(reason)) {
    return (
      `for the native TensorFlow backend: npm install ${NATIVE_PACKAGE} --allow-scripts=${NATIVE_PACKAGE} ` +
      `(its install script downloads libtensorflow; npm 11 runs it only when allowed; with CUDA use ${NATIVE_GPU_PACKAGE})`
    );
  }
  return `if its libtensorflow was never downloaded (npm 11 skips install scripts until approved): ${approve} && npm rebuild ${NATIVE_PACKAGE}`;
}

/**
 * True the first time `key` is asked for in this cache folder (and records it); false afterwards.
 * When the folder cannot be written, always true (better a repeated hint than none).
 */
export function firstTime(key: string, dir = cacheDir()): boolean {
  const file = join(dir, 'notices', createHash('sha256').update(key).digest('hex').slice(0, 16));
  if (existsSync(file)) return false;
  try {
    mkdirSync(join(dir, 'notices'), { recursive: true });
    writeFileSync(file, key + '\n');
  } catch {
    // read-only home: show the hint every time
  }
  return true;
}
