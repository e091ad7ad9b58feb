import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe } from 'vitest';

/** Repository root. */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** The shared fixtures folder (`../shared/fixtures` next to the checkout); override with MCLIP_FIXTURES. */
export const FIXTURES = process.env.MCLIP_FIXTURES ?? join(ROOT, '..', 'shared', 'fixtures');

export function fixture(...parts: string[]): string {
  return join(FIXTURES, ...parts);
}

export const HAVE_FIXTURES = existsSync(FIXTURES);

declare module '@vitest/runner' {
  interface TaskMeta {
    /** Set on the tests of a fixture suite (describeFixtures): the folder they read. test/slowest-reporter.ts counts their skips. */
    needsFixtures?: string;
  }
}

/** One line naming what is skipped and the missing folder (stderr; vitest shows it under the test file). */
function warnMissing(what: string): void {
  console.warn(`mclip tests: SKIPPED ${what}: the fixtures folder ${FIXTURES} is missing (set MCLIP_FIXTURES, or put them at ../shared/fixtures next to the checkout)`);
}

/**
 * `describe` for a suite that reads FIXTURES. Without the folder the suite is skipped loudly: a warning line
 * names the suite and the folder, and the summary at the end of the run (test/slowest-reporter.ts) counts
 * its tests, so a run without fixtures never looks like a complete one.
 */
export function describeFixtures(name: string, fn: () => void): void;
export function describeFixtures(name: string, opts: { concurrent?: boolean }, fn: () => void): void;
export function describeFixtures(name: string, a: (() => void) | { concurrent?: boolean }, b?: () => void): void {
  const [opts, fn] = typeof a === 'function' ? [{}, a] : [a, b!];
  if (!HAVE_FIXTURES) warnMissing(`'${name}'`);
  describe.skipIf(!HAVE_FIXTURES)(name, { ...opts, meta: { needsFixtures: FIXTURES } }, fn);
}

/** For a fixture check inside a test that also checks other things: true (and a warning) when the folder is missing. */
export function missingFixtures(what: string): boolean {
  if (!HAVE_FIXTURES) warnMissing(what);
  return !HAVE_FIXTURES;
}
