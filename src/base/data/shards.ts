/**
 * WebDataset tar shards: a writer that rolls over to a new shard every N samples, and a tolerant
 * reader that groups tar members into samples.
 *
 * Layout (as webdataset): one sample = the consecutive tar members that share a key, named
 * `<key>.<member>`. The key is the member path up to the first dot of its basename (a folder
 * prefix stays part of the key); `<member>` is everything after that dot (`png`, `txt`, `syn.json`).
 *
 * The reader never crashes mid-epoch on bad data: a truncated or corrupt shard, a member without
 * a suffix, a duplicated member or a sample missing a required member is reported in
 * `summary.problems` (shard, key, member, reason), counted in `summary.skipped` and skipped.
 */
import { closeSync, createReadStream, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { extract, pack, type Pack } from 'tar-stream';
import { MclipError } from '../../errors.js';

/** One sample: its key, the shard it came from and its members by suffix (`png`, `txt`, `json`, …). */
export interface ShardSample {
  key: string;
  shard: string;
  members: Map<string, Uint8Array>;
}

/** Something wrong in a shard; `key`/`member` are set when known. */
export interface ShardProblem {
  shard: string;
  key?: string;
  member?: string;
  reason: string;
}

export interface ShardReadSummary {
  /** shards opened so far */
  shards: number;
  /** samples yielded */
  samples: number;
  /** samples dropped because of a problem (each also in `problems`) */
  skipped: number;
  /** at most `maxProblems` stored; `problemCount` counts them all */
  problems: ShardProblem[];
  problemCount: number;
}

export interface ReadShardsOptions {
  /** members every sample must have (e.g. `['png', 'txt']`); samples lacking one are skipped and reported */
  required?: string[];
  /** called for every problem as it is found (e.g. to log it) */
  onProblem?: (p: ShardProblem) => void;
  /** cap on stored problems (default 10 000); all are still counted and passed to `onProblem` */
  maxProblems?: number;
}

/** Splits `dir/abc.seg.png` into key `dir/abc` and member `seg.png` (webdataset's rule). */
export function splitMemberName(name: string): { key: string; member: string } | undefined {
  const slash = name.lastIndexOf('/');
  const dot = name.indexOf('.', slash + 1);
  if (dot <= slash + 1 || dot === name.length - 1) return undefined;
  return { key: name.slice(0, dot), member: name.slice(dot + 1) };
}

/** Resolves a shard folder (its `*.tar` files, sorted) or a list of files/folders into shard paths. */
export function listShards(source: string | readonly string[]): string[] {
  const items = typeof source === 'string' ? [source] : [...source];
  if (items.length === 0) throw new MclipError('no shards given (expected a folder of .tar shards or a list of .tar files)');
  const out: string[] = [];
  for (const item of items) {
    if (!existsSync(item)) throw new MclipError(`${item}: shard folder or file not found`);
    if (statSync(item).isDirectory()) {
      const tars = readdirSync(item)
        .filter((f) => f.endsWith('.tar') && !f.startsWith('.'))
        .sort();
      if (tars.length === 0) throw new MclipError(`${item}: no .tar shards in this folder (expected shard-000000.tar, …)`);
      out.push(...tars.map((f) => join(item, f)));
    } else {
      out.push(item);
    }
  }
  return out;
}

/**
 * Reads samples from webdataset shards. Iterate it (`for await`); `summary` is updated as it goes
 * and is final once the iteration ends. Throws MclipError up front when there are no shards.
 */
export class ShardReader implements AsyncIterable<ShardSample> {
  readonly files: string[];
  readonly summary: ShardReadSummary = { shards: 0, samples: 0, skipped: 0, problems: [], problemCount: 0 };
  private readonly required: string[];
  private readonly onProblem?: (p: ShardProblem) => void;
  private readonly maxProblems: number;

  constructor(source: string | readonly string[], options: ReadShardsOptions = {}) {
    this.files = listShards(source);
    this.required = options.required ?? [];
    this.onProblem = options.onProblem;
    this.maxProblems = options.maxProblems ?? 10_000;
  }

  /** Records a problem (used by layers on top, e.g. sample decoding); `skip` counts a dropped sample. */
  report(p: ShardProblem, skip: boolean): void {
    this.summary.problemCount++;
    if (this.summary.problems.length < this.maxProblems) this.summary.problems.push(p);
    if (skip) this.summary.skipped++;
    this.onProblem?.(p);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<ShardSample> {
    for (const file of this.files) {
      this.summary.shards++;
      yield* this.readShard(file);
    }
  }

  /** Checks a finished sample; returns it when complete. */
  private finish(shard: string, cur: ShardSample): ShardSample | undefined {
    const missing = this.required.filter((m) => !cur.members.has(m));
    if (missing.length > 0) {
      missing.forEach((m, i) => this.report({ shard, key: cur.key, member: m, reason: `missing required member "${m}" (has: ${[...cur.members.keys()].join(', ') || 'nothing'})` }, i === 0));
      return undefined;
    }
    this.summary.samples++;
    return cur;
  }

  private async *readShard(shard: string): AsyncGenerator<ShardSample> {
    const src = createReadStream(shard);
    const ex = extract();
    src.on('error', (e) => ex.destroy(e));
    src.pipe(ex);
    let cur: ShardSample | undefined;
    let broken: string | undefined; // key of a sample already reported (duplicate member): drop its other members
    let entryKey: string | undefined;
    let entryMember: string | undefined;
    let entryName: string | undefined;
    try {
      for await (const entry of ex) {
        entryName = entry.header.name;
        entryKey = entryMember = undefined;
        const type = entry.header.type ?? 'file';
        if (type !== 'file' && type !== 'contiguous-file') {
          entry.resume();
          continue;
        }
        const parts = splitMemberName(entry.header.name);
        if (parts) ({ key: entryKey, member: entryMember } = parts);
        const data = await readEntry(entry);
        entryKey = entryMember = undefined; // fully read: a later failure is not inside this member
        if (!parts) {
          this.report({ shard, reason: `tar member "${entry.header.name}" has no <key>.<member> name; ignored` }, false);
          continue;
        }
        if (cur && cur.key !== parts.key) {
          const done = this.finish(shard, cur);
          cur = undefined;
          if (done) yield done;
        }
        if (broken !== undefined && broken === parts.key) continue;
        broken = undefined;
        if (!cur) cur = { key: parts.key, shard, members: new Map() };
        if (cur.members.has(parts.member)) {
          this.report({ shard, key: parts.key, member: parts.member, reason: `duplicate member "${parts.member}" in sample; sample skipped` }, true);
          broken = parts.key;
          cur = undefined;
          continue;
        }
        cur.members.set(parts.member, data);
      }
    } catch (e) {
      const msg = errorText(e);
      if (entryKey !== undefined && cur && cur.key !== entryKey) {
        // the failing member starts a new sample, so the previous one was complete
        const done = this.finish(shard, cur);
        cur = undefined;
        if (done) yield done;
      }
      if (entryKey !== undefined) {
        this.report({ shard, key: entryKey, member: entryMember, reason: `truncated or corrupt shard (${msg}) while reading member "${entryName}"; sample skipped, rest of shard unreadable` }, true);
        cur = undefined;
      } else if (cur) {
        this.report({ shard, key: cur.key, reason: `truncated or corrupt shard (${msg}) after member "${entryName}"; sample may be incomplete, skipped; rest of shard unreadable` }, true);
        cur = undefined;
      } else {
        this.report({ shard, reason: `truncated or corrupt shard (${msg})${entryName ? ` after member "${entryName}"` : ''}; rest of shard unreadable` }, false);
      }
    } finally {
      src.destroy();
      ex.destroy();
    }
    if (cur) {
      const done = this.finish(shard, cur);
      if (done) yield done;
    }
  }
}

/** Reads webdataset samples from a shard folder or list of shard files (see ShardReader). */
export function readShards(source: string | readonly string[], options?: ReadShardsOptions): ShardReader {
  return new ShardReader(source, options);
}

async function readEntry(entry: AsyncIterable<unknown>): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  for await (const c of entry) chunks.push(c as Buffer);
  const buf = chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

// ---------------------------------------------------------------------------------------------
// Writer

export interface ShardWriterOptions {
  /** samples per shard before rolling over (default 1000) */
  samplesPerShard?: number;
  /** shard file name for an index (default `shard-000000.tar`) */
  name?: (index: number) => string;
  /** first shard index (default 0) */
  startIndex?: number;
  /** mtime stored in every tar header (default 2000-01-01, so that shards are reproducible) */
  mtime?: Date;
}

export interface ShardWriterSummary {
  /** finished shard paths, in order */
  shards: string[];
  samples: number;
  /** bytes of all finished shards */
  bytes: number;
}

/** A sample's members: suffix → bytes (strings are written as UTF-8). */
export type SampleMembers = Map<string, Uint8Array | string> | Record<string, Uint8Array | string>;

const DEFAULT_MTIME = new Date(Date.UTC(2000, 0, 1));

export function defaultShardName(index: number): string {
  return `shard-${String(index).padStart(6, '0')}.tar`;
}

interface OpenShard {
  path: string;
  tmp: string;
  fd: number;
  pack: Pack;
  done: Promise<void>;
  samples: number;
}

/**
 * Writes samples into `dir/shard-000000.tar`, `shard-000001.tar`, … rolling over every
 * `samplesPerShard` samples. Each shard is written under a temporary name (`.shard-….tar.tmp-…`)
 * and renamed once complete, so a folder never holds a half-written `.tar`. Call `close()` at
 * the end (or `abort()` on failure, which removes the unfinished shard).
 */
export class ShardWriter {
  readonly dir: string;
  private readonly perShard: number;
  private readonly name: (i: number) => string;
  private readonly mtime: Date;
  private index: number;
  private open?: OpenShard;
  private readonly keys = new Set<string>();
  private closed = false;
  private readonly result: ShardWriterSummary = { shards: [], samples: 0, bytes: 0 };

  constructor(dir: string, options: ShardWriterOptions = {}) {
    const n = options.samplesPerShard ?? 1000;
    if (!Number.isInteger(n) || n < 1) throw new MclipError(`samples per shard must be a positive integer, got ${n}`);
    this.dir = resolve(dir);
    this.perShard = n;
    this.name = options.name ?? defaultShardName;
    this.index = options.startIndex ?? 0;
    this.mtime = options.mtime ?? DEFAULT_MTIME;
    try {
      mkdirSync(this.dir, { recursive: true });
    } catch (e) {
      throw new MclipError(`cannot create shard folder ${this.dir}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { cause: e });
    }
  }

  get samples(): number {
    return this.result.samples;
  }

  /** Appends one sample. `key` must be non-empty, without dots, unique in this writer. */
  async write(key: string, members: SampleMembers): Promise<void> {
    if (this.closed) throw new MclipError(`${this.dir}: shard writer already closed`);
    if (key.length === 0 || key.includes('.') || key.endsWith('/')) throw new MclipError(`sample key "${key}": must be non-empty and contain no "." (webdataset keys end at the first dot)`);
    if (this.keys.has(key)) throw new MclipError(`sample key "${key}": written twice (keys must be unique)`);
    const entries = members instanceof Map ? [...members] : Object.entries(members);
    if (entries.length === 0) throw new MclipError(`sample key "${key}": no members`);
    for (const [m] of entries) if (m.length === 0 || m.includes('/')) throw new MclipError(`sample key "${key}": bad member name "${m}" (expected a suffix such as png, txt, json)`);
    this.keys.add(key);
    const shard = this.open ?? this.startShard();
    for (const [m, v] of entries) {
      const buf = typeof v === 'string' ? Buffer.from(v, 'utf8') : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
      await new Promise<void>((res, rej) =>
        shard.pack.entry({ name: `${key}.${m}`, size: buf.byteLength, mode: 0o644, mtime: this.mtime, type: 'file' }, buf, (err) => (err ? rej(err) : res())),
      );
    }
    shard.samples++;
    this.result.samples++;
    if (shard.samples >= this.perShard) await this.finishShard();
  }

  /** Finishes the last shard; returns the shards written. */
  async close(): Promise<ShardWriterSummary> {
    if (!this.closed) {
      if (this.open) await this.finishShard();
      this.closed = true;
    }
    return { ...this.result, shards: [...this.result.shards] };
  }

  /** Drops the unfinished shard (finished ones stay). */
  abort(): void {
    this.closed = true;
    const s = this.open;
    this.open = undefined;
    if (!s) return;
    s.pack.destroy();
    try {
      closeSync(s.fd);
    } catch {
      /* closed */
    }
    try {
      unlinkSync(s.tmp);
    } catch {
      /* gone */
    }
  }

  private startShard(): OpenShard {
    const file = this.name(this.index++);
    const path = join(this.dir, file);
    const tmp = join(this.dir, `.${basename(file)}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`);
    let fd: number;
    try {
      fd = openSync(tmp, 'wx');
    } catch (e) {
      throw new MclipError(`cannot write shard ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { cause: e });
    }
    const p = pack();
    const done = new Promise<void>((res, rej) => {
      p.on('data', (data: unknown) => {
        const chunk = data as Buffer;
        try {
          let off = 0;
          while (off < chunk.byteLength) off += writeSync(fd, chunk, off, chunk.byteLength - off);
        } catch (e) {
          p.destroy(e as Error);
        }
      });
      p.on('end', () => res());
      p.on('error', (e) => rej(e));
    });
    done.catch(() => undefined); // surfaced in finishShard
    this.open = { path, tmp, fd, pack: p, done, samples: 0 };
    return this.open;
  }

  private async finishShard(): Promise<void> {
    const s = this.open;
    if (!s) return;
    s.pack.finalize();
    try {
      await s.done;
      fsyncSync(s.fd);
      closeSync(s.fd);
      renameSync(s.tmp, s.path);
    } catch (e) {
      this.abort();
      throw new MclipError(`cannot write shard ${s.path}: ${(e as NodeJS.ErrnoException).code ?? errorText(e)}`, { cause: e });
    }
    this.open = undefined;
    this.result.shards.push(s.path);
    this.result.bytes += statSync(s.path).size;
  }
}
