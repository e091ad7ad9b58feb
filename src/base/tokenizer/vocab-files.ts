/**
 * The on-disk CLIP vocabulary: `clip-merges.txt` (a `#version: 0.2` header line, then one merge
 * "left right" per line, in rank order) and `clip-vocab.json` (token -> id). Ids are laid out as in CLIP:
 * the 256 byte symbols, their 256 `</w>` forms, one token per merge, then the start/end-of-text tokens
 * (spelled `<|startoftext|>` / `<|endoftext|>` in the JSON, as in the HF/Apple files), so the number of
 * merges used is `vocabSize - 514` (48894 for CLIP: the merges file may hold more lines).
 */
import { readFileSync, renameSync, writeFileSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

import { MclipError, check } from '../../errors.js';
import { BYTE_SYMBOLS } from './bytes-unicode.js';
import { EOW } from './bpe.js';

export const MERGES_FILE = 'clip-merges.txt';
export const VOCAB_FILE = 'clip-vocab.json';
export const MERGES_HEADER = '#version: 0.2';
/** JSON spellings of the special tokens (open_clip calls them <start_of_text> / <end_of_text>). */
export const SOT_TOKEN = '<|startoftext|>';
export const EOT_TOKEN = '<|endoftext|>';
const SOT_ALIASES = [SOT_TOKEN, '<start_of_text>'];
const EOT_ALIASES = [EOT_TOKEN, '<end_of_text>'];

/** Paths of the two vocabulary files. */
export interface VocabFiles {
  merges: string;
  vocab: string;
}

/** A loaded (or freshly trained) vocabulary. */
export interface VocabData {
  /** merges in rank order, "left right" */
  merges: string[];
  /** token -> id, ids 0..size-1 */
  vocab: Record<string, number> | ReadonlyMap<string, number>;
}

/** The vocabulary as a Map (no copy when it already is one). */
export function vocabMap(vocab: VocabData['vocab']): ReadonlyMap<string, number> {
  return vocab instanceof Map ? vocab : new Map(Object.entries(vocab));
}

export function vocabFilesIn(dir: string): VocabFiles {
  return { merges: join(dir, MERGES_FILE), vocab: join(dir, VOCAB_FILE) };
}

function readBytes(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new MclipError(`cannot read ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { cause: e });
  }
}

/** Reads and checks both files; the merges are cut to the number the vocabulary's size implies. */
export function readVocabFiles(files: VocabFiles): { merges: string[]; vocab: Map<string, number> } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readBytes(files.vocab, 'CLIP vocabulary').toString('utf8'));
  } catch (e) {
    if (e instanceof MclipError) throw e;
    throw new MclipError(`${files.vocab}: not valid JSON (expected a {token: id} object): ${(e as Error).message}`);
  }
  check(
    typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed),
    `${files.vocab}: expected a JSON object {token: id}`,
  );
  const v = new Map(Object.entries(parsed as Record<string, unknown>)) as Map<string, number>;
  const size = v.size;
  const seen = new Uint8Array(size);
  for (const [tok, id] of v) {
    if (!(Number.isInteger(id) && id >= 0 && id < size && !seen[id])) {
      throw new MclipError(
        `${files.vocab}: token ${JSON.stringify(tok)} has id ${JSON.stringify(id)}; expected unique integer ids 0..${size - 1}`,
      );
    }
    seen[id] = 1;
  }
  const nMerges = size - 512 - 2;
  check(nMerges >= 0, `${files.vocab}: ${size} tokens; a CLIP vocabulary has at least 514 (256 bytes x 2 + 2 special)`);
  for (const s of BYTE_SYMBOLS) {
    if (!v.has(s) || !v.has(s + EOW)) {
      throw new MclipError(`${files.vocab}: byte symbol ${JSON.stringify(s)} (or its ${EOW} form) is missing`);
    }
  }
  check(
    SOT_ALIASES.some((t) => v.has(t)) && EOT_ALIASES.some((t) => v.has(t)),
    `${files.vocab}: expected the special tokens ${SOT_TOKEN} and ${EOT_TOKEN}`,
  );

  // Only the first nMerges + 1 lines are used (CLIP's file holds 262k merges, the model uses 48894).
  const buf = readBytes(files.merges, 'CLIP merges');
  let end = -1;
  for (let i = 0; i <= nMerges && end < buf.length; i++) {
    end = buf.indexOf(0x0a, end + 1);
    if (end < 0) end = buf.length;
  }
  const lines = buf.subarray(0, Math.min(end, buf.length)).toString('utf8').split('\n');
  check(
    lines[0].startsWith('#'),
    `${files.merges}: expected a '${MERGES_HEADER}' header line, got ${JSON.stringify(lines[0].slice(0, 40))}`,
  );
  check(
    lines.length >= nMerges + 1 && (nMerges === 0 || lines[nMerges].trim() !== ''),
    `${files.merges}: expected at least ${nMerges} merge lines for a ${size}-token vocabulary (${files.vocab}), got ${lines.length - 1}`,
  );
  const merges = new Array<string>(nMerges);
  for (let i = 0; i < nMerges; i++) {
    const line = lines[i + 1];
    const parts = line.trim().split(/\s+/);
    if (parts.length !== 2 || !v.has(parts[0] + parts[1])) {
      throw new MclipError(
        `${files.merges}: line ${i + 2} ${JSON.stringify(line.slice(0, 60))}: expected "left right" with "left+right" in ${files.vocab}`,
      );
    }
    merges[i] = parts[0] + ' ' + parts[1];
  }
  return { merges, vocab: v };
}

/** Writes `clip-merges.txt` and `clip-vocab.json` into `dir` (created if needed), each atomically. */
export function writeVocabFiles(dir: string, data: VocabData): VocabFiles {
  mkdirSync(dir, { recursive: true });
  const files = vocabFilesIn(dir);
  const ordered = [...vocabMap(data.vocab)].sort((a, b) => a[1] - b[1]);
  atomicWrite(files.merges, [MERGES_HEADER, ...data.merges].join('\n') + '\n');
  atomicWrite(files.vocab, JSON.stringify(Object.fromEntries(ordered), null, 1) + '\n');
  return files;
}

function atomicWrite(path: string, text: string): void {
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  try {
    writeFileSync(tmp, text, 'utf8');
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new MclipError(`cannot write ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { cause: e });
  }
}

/** Id of the start-of-text token in a vocabulary. */
export function sotIdOf(vocab: ReadonlyMap<string, number>): number {
  for (const t of SOT_ALIASES) if (vocab.has(t)) return vocab.get(t)!;
  throw new MclipError(`vocabulary has no ${SOT_TOKEN} token`);
}

/** Id of the end-of-text token in a vocabulary. */
export function eotIdOf(vocab: ReadonlyMap<string, number>): number {
  for (const t of EOT_ALIASES) if (vocab.has(t)) return vocab.get(t)!;
  throw new MclipError(`vocabulary has no ${EOT_TOKEN} token`);
}
