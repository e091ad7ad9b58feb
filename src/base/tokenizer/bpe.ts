/**
 * Byte-pair encoding of one pre-token (CLIP `SimpleTokenizer.bpe`): the token's byte-level characters,
 * the last one suffixed with `</w>`, are merged pairwise, always the adjacent pair with the lowest merge
 * rank first (all its occurrences left to right), until no adjacent pair has a rank.
 */

/** End-of-word marker appended to a word's last symbol. */
export const EOW = '</w>';

export class BytePairEncoder {
  /** "left right" -> rank (symbols never contain a space: the byte-level alphabet has no U+0020). */
  private readonly ranks: Map<string, number>;
  private readonly cache = new Map<string, readonly string[]>();
  private readonly maxCache: number;

  constructor(merges: ReadonlyArray<readonly [string, string]>, maxCache = 1 << 18) {
    this.ranks = new Map();
    merges.forEach(([a, b], i) => {
      const key = a + ' ' + b;
      this.ranks.set(key, i); // a repeated pair keeps its last rank, like Python's dict(zip(merges, range(n)))
    });
    this.maxCache = maxCache;
  }

  get size(): number {
    return this.ranks.size;
  }

  /** The BPE symbols of one token given as byte-level characters (e.g. "photo" -> ["photo</w>"]). */
  encode(token: string): readonly string[] {
    const hit = this.cache.get(token);
    if (hit) return hit;
    const word = Array.from(token);
    word[word.length - 1] += EOW;
    const out = this.merge(word);
    if (this.cache.size >= this.maxCache) this.cache.clear();
    this.cache.set(token, out);
    return out;
  }

  private merge(word: string[]): string[] {
    while (word.length > 1) {
      let best = Infinity;
      let first = '';
      let second = '';
      for (let i = 0; i < word.length - 1; i++) {
        const r = this.ranks.get(word[i] + ' ' + word[i + 1]);
        if (r !== undefined && r < best) {
          best = r;
          first = word[i];
          second = word[i + 1];
        }
      }
      if (best === Infinity) break;
      const next: string[] = [];
      for (let i = 0; i < word.length; ) {
        if (i < word.length - 1 && word[i] === first && word[i + 1] === second) {
          next.push(first + second);
          i += 2;
        } else {
          next.push(word[i]);
          i += 1;
        }
      }
      word = next;
    }
    return word;
  }
}
