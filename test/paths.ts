import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root. */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** The shared fixtures folder (`../shared/fixtures` next to the checkout); override with MCLIP_FIXTURES. */
export const FIXTURES = process.env.MCLIP_FIXTURES ?? join(ROOT, '..', 'shared', 'fixtures');

export function fixture(...parts: string[]): string {
  return join(FIXTURES, ...parts);
}

export const HAVE_FIXTURES = existsSync(FIXTURES);
