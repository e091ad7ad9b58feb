/**
 * Training a CLIP-style byte-level BPE vocabulary on a caption corpus: the same clean-up, regex
 * pre-tokenisation, byte alphabet and `</w>` word ends as ClipTokenizer, so the result loads and encodes
 * consistently. Layout as in CLIP: 256 byte symbols, their 256 `</w>` forms, one token per merge (in merge
 * order), then <|startoftext|> (size-2) and <|endoftext|> (size-1).
 *
 * Algorithm: word-frequency table, then greedy merging of the most frequent adjacent pair (ties: the pair
 * of earlier-created symbols) with incremental pair counts, a pair -> words index and a lazy max-heap.
 * A merge whose concatenation already exists as a token (possible when e.g. "ab c" and "a bc" both
 * occur) is skipped, so token strings stay unique and the id layout holds.
 */
import { check } from '../../errors.js';
import { EOW } from './bpe.js';
import { BYTE_SYMBOLS, toByteSymbols } from './bytes-unicode.js';
import { cleanLower } from './clean.js';
import { EOT_TEXT, SOT_TEXT, splitPieces } from './pretokenize.js';
import { EOT_TOKEN, SOT_TOKEN, type VocabFiles, writeVocabFiles } from './vocab-files.js';

/** A trained vocabulary (`vocab` ids follow the CLIP layout described above). */
export interface TrainedVocab {
  merges: string[];
  vocab: Record<string, number>;
}

/** Smallest vocabulary: 512 byte symbols + 2 special tokens (no merges). */
export const MIN_VOCAB_SIZE = 514;

const KEY = 1 << 21; // pair key = left * KEY + right (symbol ids stay far below 2^21, keys below 2^53)

/** Max-heap of (count, key) with ties broken by the smaller key. */
class PairHeap {
  private counts: number[] = [];
  private keys: number[] = [];
  get size(): number {
    return this.keys.length;
  }
  private above(i: number, j: number): boolean {
    const a = this.counts[i], b = this.counts[j];
    return a > b || (a === b && this.keys[i] < this.keys[j]);
  }
  private swap(i: number, j: number): void {
    [this.counts[i], this.counts[j]] = [this.counts[j], this.counts[i]];
    [this.keys[i], this.keys[j]] = [this.keys[j], this.keys[i]];
  }
  push(count: number, key: number): void {
    this.counts.push(count);
    this.keys.push(key);
    let i = this.keys.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.above(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }
  pop(): [count: number, key: number] {
    const top: [number, number] = [this.counts[0], this.keys[0]];
    const lastC = this.counts.pop()!, lastK = this.keys.pop()!;
    if (this.keys.length > 0) {
      this.counts[0] = lastC;
      this.keys[0] = lastK;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1, r = l + 1;
        let m = i;
        if (l < this.keys.length && this.above(l, m)) m = l;
        if (r < this.keys.length && this.above(r, m)) m = r;
        if (m === i) break;
        this.swap(i, m);
        i = m;
      }
    }
    return top;
  }
}

/** Learns `size - 514` merges (fewer if the corpus runs out of pairs) and the CLIP-layout vocabulary. */
export function trainVocab(texts: Iterable<string>, size: number): TrainedVocab {
  check(
    Number.isInteger(size) && size >= MIN_VOCAB_SIZE,
    `vocabulary size must be an integer >= ${MIN_VOCAB_SIZE} (512 byte symbols + 2 special tokens), got ${size}`,
  );
  // symbols: id -> string; the 512 base symbols first
  const symbols: string[] = [...BYTE_SYMBOLS, ...BYTE_SYMBOLS.map((s) => s + EOW)];
  const symbolId = new Map<string, number>(symbols.map((s, i) => [s, i]));

  // 1. word frequencies
  const freq = new Map<string, number>();
  for (const text of texts) {
    for (const piece of splitPieces(cleanLower(text))) {
      if (piece === SOT_TEXT || piece === EOT_TEXT) continue;
      const w = toByteSymbols(piece);
      freq.set(w, (freq.get(w) ?? 0) + 1);
    }
  }
  const words: number[][] = [];
  const counts: number[] = [];
  for (const [w, c] of freq) {
    const chars = Array.from(w);
    words.push(chars.map((ch, i) => symbolId.get(i === chars.length - 1 ? ch + EOW : ch)!));
    counts.push(c);
  }

  // 2. pair statistics
  const pairCount = new Map<number, number>();
  const pairWords = new Map<number, Set<number>>();
  const addWord = (wi: number, sign: 1 | -1, dirty: Set<number> | null): void => {
    const w = words[wi];
    const c = counts[wi] * sign;
    for (let i = 0; i + 1 < w.length; i++) {
      const k = w[i] * KEY + w[i + 1];
      pairCount.set(k, (pairCount.get(k) ?? 0) + c);
      if (sign > 0) {
        let s = pairWords.get(k);
        if (!s) pairWords.set(k, (s = new Set()));
        s.add(wi);
      }
      dirty?.add(k);
    }
  };
  for (let wi = 0; wi < words.length; wi++) addWord(wi, 1, null);
  const heap = new PairHeap();
  for (const [k, c] of pairCount) heap.push(c, k);

  // 3. merges
  const merges: string[] = [];
  const target = size - MIN_VOCAB_SIZE;
  while (merges.length < target && heap.size > 0) {
    const [c, k] = heap.pop();
    if (c <= 0 || pairCount.get(k) !== c) continue; // stale heap entry
    const a = Math.floor(k / KEY), b = k % KEY;
    const joined = symbols[a] + symbols[b];
    if (symbolId.has(joined)) {
      pairCount.delete(k); // would duplicate an existing token: never merge this pair
      continue;
    }
    const id = symbols.length;
    symbols.push(joined);
    symbolId.set(joined, id);
    merges.push(symbols[a] + ' ' + symbols[b]);

    const dirty = new Set<number>();
    for (const wi of pairWords.get(k) ?? []) {
      const w = words[wi];
      let has = false;
      for (let i = 0; i + 1 < w.length; i++) if (w[i] === a && w[i + 1] === b) { has = true; break; }
      if (!has) continue;
      addWord(wi, -1, dirty);
      const next: number[] = [];
      for (let i = 0; i < w.length; ) {
        if (i + 1 < w.length && w[i] === a && w[i + 1] === b) {
          next.push(id);
          i += 2;
        } else next.push(w[i++]);
      }
      words[wi] = next;
      addWord(wi, 1, dirty);
    }
    pairWords.delete(k);
    pairCount.delete(k);
    for (const d of dirty) {
      const n = pairCount.get(d);
      if (n === undefined) continue;
      if (n <= 0) {
        pairCount.delete(d);
        pairWords.delete(d);
      } else heap.push(n, d);
    }
  }

  const vocab: Record<string, number> = {};
  symbols.forEach((s, i) => (vocab[s] = i));
  vocab[SOT_TOKEN] = symbols.length;
  vocab[EOT_TOKEN] = symbols.length + 1;
  return { merges, vocab };
}

/** Writes a trained vocabulary as `clip-merges.txt` + `clip-vocab.json` in `dir` (atomically). */
export function writeVocab(dir: string, result: TrainedVocab): VocabFiles {
  return writeVocabFiles(dir, result);
}
