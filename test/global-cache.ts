/**
 * vitest global setup: the suite's cache folder (ONNX exports of `mclip eval`, once-per-machine notices)
 * is a fresh temporary one per run — set as MCLIP_CACHE_DIR in vitest.config.ts — removed afterwards, so
 * tests neither read nor fill the user's ~/.cache/mclip.
 */
import { mkdirSync, rmSync } from 'node:fs';

export function setup(): () => void {
  const dir = process.env.MCLIP_CACHE_DIR;
  if (dir) mkdirSync(dir, { recursive: true });
  return () => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  };
}
