/** Compares a loaded state dict with the names/shapes a model expects. */
import { MclipError } from '../../errors.js';
import type { StateDict } from './tensor-data.js';

export interface StateDictDiff {
  missing: string[];
  unexpected: string[];
  misshaped: { key: string; expected: number[]; got: number[] }[];
}

/** How many keys of each kind an error message lists before summarising with a count. */
export const MAX_LISTED = 5;

/** Missing keys (in `expected` order), unexpected keys (in `got` order) and shape mismatches. */
export function diffStateDict(expected: Map<string, readonly number[]>, got: StateDict): StateDictDiff {
  const diff: StateDictDiff = { missing: [], unexpected: [], misshaped: [] };
  for (const [key, shape] of expected) {
    const t = got.get(key);
    if (!t) diff.missing.push(key);
    else if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      diff.misshaped.push({ key, expected: [...shape], got: [...t.shape] });
    }
  }
  for (const key of got.keys()) if (!expected.has(key)) diff.unexpected.push(key);
  return diff;
}

function list<T>(items: T[], fmt: (x: T) => string, sep = ', '): string {
  const shown = items.slice(0, MAX_LISTED).map(fmt).join(sep);
  return items.length > MAX_LISTED ? `${shown}, ... (${items.length - MAX_LISTED} more)` : shown;
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

/**
 * Returns null when `got` has exactly the expected keys and shapes, else a one-line MclipError such as
 * `model.pt: state dict does not match the model: 2 missing keys (a, b); 1 unexpected key (c);
 * 2 mis-shaped keys (d: expected [64, 3], got [64, 4]; e: expected [], got [1])`.
 */
export function compareStateDict(
  expected: Map<string, readonly number[]>,
  got: StateDict,
  source: string,
): MclipError | null {
  const d = diffStateDict(expected, got);
  const parts: string[] = [];
  if (d.missing.length) parts.push(`${plural(d.missing.length, 'missing key')} (${list(d.missing, (k) => k)})`);
  if (d.unexpected.length) {
    parts.push(`${plural(d.unexpected.length, 'unexpected key')} (${list(d.unexpected, (k) => k)})`);
  }
  if (d.misshaped.length) {
    parts.push(
      `${plural(d.misshaped.length, 'mis-shaped key')} (${list(
        d.misshaped,
        (m) => `${m.key}: expected [${m.expected.join(', ')}], got [${m.got.join(', ')}]`,
        '; ',
      )})`,
    );
  }
  if (parts.length === 0) return null;
  return new MclipError(`${source}: state dict does not match the model: ${parts.join('; ')}`);
}

/** Throws the error of {@link compareStateDict}, if any. */
export function assertStateDictMatches(
  expected: Map<string, readonly number[]>,
  got: StateDict,
  source: string,
): void {
  const err = compareStateDict(expected, got, source);
  if (err) throw err;
}
