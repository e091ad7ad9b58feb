/**
 * `--shard i/N` (0 ≤ i < N): N independent jobs (a Slurm array, a Kubernetes Indexed Job) split one
 * command's input between them, each writing its own part; `mclip merge-results` joins the parts
 * into what the unsharded run writes (docs/scale.md).
 *
 * The split is contiguous and deterministic: `count` items, grouped into units of `unit` items
 * (the last unit may be short), are cut into N runs of ⌊·⌋-balanced unit counts; part i takes
 * units ⌊i·U/N⌋ … ⌊(i+1)·U/N⌋ − 1. `mclip reinforce` splits its input shard files (unit 1);
 * `mclip eval` splits the samples in whole `--batch` batches, so every part embeds exactly the
 * batches the unsharded run embeds (same rows in each forward: bit-identical embeddings).
 */
import { MclipError } from '../errors.js';
import { UsageError } from './usage.js';

export interface ShardSpec {
  /** 0-based part index, < count */
  index: number;
  /** number of parts, ≥ 1 */
  count: number;
}

/** A half-open item range [start, end). */
export interface ShardRange {
  start: number;
  end: number;
}

/** `i/N` as typed on the command line. */
export function formatShard(s: ShardSpec): string {
  return `${s.index}/${s.count}`;
}

/**
 * Parses `--shard i/N`; undefined when the flag is absent. Anything else than two integers with
 * 0 ≤ i < N is a one-line UsageError naming the flag.
 */
export function parseShard(value: unknown, flag = '--shard'): ShardSpec | undefined {
  if (value === undefined) return undefined;
  const text = Array.isArray(value) ? String(value[value.length - 1]) : String(value);
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(text);
  if (!m) throw new UsageError(`${flag}: expected INDEX/COUNT with 0 ≤ INDEX < COUNT (e.g. 0/4), got '${text}'`);
  const index = Number(m[1]);
  const count = Number(m[2]);
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(count)) throw new UsageError(`${flag}: INDEX/COUNT too large, got '${text}'`);
  if (count < 1) throw new UsageError(`${flag}: COUNT must be at least 1, got '${text}'`);
  if (index >= count) throw new UsageError(`${flag}: INDEX must be below COUNT (0 … ${count - 1} for /${count}), got '${text}'`);
  return { index, count };
}

/** The units (groups of `unit` items) among `count` items. */
export function shardUnits(count: number, unit = 1): number {
  if (!Number.isInteger(count) || count < 0) throw new Error(`item count must be a non-negative integer, got ${count}`);
  if (!Number.isInteger(unit) || unit < 1) throw new Error(`unit must be a positive integer, got ${unit}`);
  return Math.ceil(count / unit);
}

/** Part `s`'s items among `count` (whole units of `unit` items; see the file comment). */
export function shardRange(count: number, s: ShardSpec, unit = 1): ShardRange {
  const units = shardUnits(count, unit);
  const lo = Math.floor((s.index * units) / s.count);
  const hi = Math.floor(((s.index + 1) * units) / s.count);
  return { start: Math.min(count, lo * unit), end: Math.min(count, hi * unit) };
}

/**
 * Part `s`'s slice of `items`. An empty part is an error (MclipError) saying how many parts the
 * input allows: a job array larger than the input is a mistake, not an idle job.
 */
export function shardItems<T>(items: readonly T[], s: ShardSpec, o: { unit?: number; what: string }): { items: T[]; range: ShardRange } {
  const unit = o.unit ?? 1;
  const range = shardRange(items.length, s, unit);
  if (range.end <= range.start) {
    const units = shardUnits(items.length, unit);
    throw new MclipError(`--shard ${formatShard(s)}: part ${s.index} would be empty: the input has only ${units} ${o.what}, so use at most ${units} parts`);
  }
  return { items: items.slice(range.start, range.end), range };
}
