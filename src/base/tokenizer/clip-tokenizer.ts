/**
 * The CLIP BPE tokenizer (open_clip `SimpleTokenizer`, clean='lower', as MobileCLIP uses it): clean-up
 * (ftfy + HTML unescape + whitespace + lower-case), regex pre-tokenisation, byte-level BPE;
 * `tokenize` adds start/end-of-text ids, truncates keeping the end-of-text id last, and zero-pads.
 */
import { check } from '../../errors.js';
import { BytePairEncoder, EOW } from './bpe.js';
import { BYTE_DECODER, toByteSymbols } from './bytes-unicode.js';
import { cleanLower } from './clean.js';
import { EOT_TEXT, SOT_TEXT, splitPieces } from './pretokenize.js';
import { type VocabData, type VocabFiles, eotIdOf, readVocabFiles, sotIdOf, vocabFilesIn, vocabMap } from './vocab-files.js';
import { resolveVocabDir } from './vocab-location.js';

export const DEFAULT_CONTEXT_LENGTH = 77;

export interface DecodeOptions {
  /**
   * Keep everything, exactly like open_clip's `decode` (special tokens spelled out, padding decoded as
   * '!'). Default false: a leading start-of-text id is dropped and decoding stops at the first
   * end-of-text id, and the trailing space is trimmed.
   */
  raw?: boolean;
}

export class ClipTokenizer {
  readonly vocabSize: number;
  readonly sotId: number;
  readonly eotId: number;
  private readonly encoder: ReadonlyMap<string, number>;
  private readonly decoder: string[];
  private readonly bpe: BytePairEncoder;
  /** piece (cleaned text) -> ids */
  private readonly pieceCache = new Map<string, readonly number[]>();

  constructor(data: VocabData) {
    this.encoder = vocabMap(data.vocab);
    this.vocabSize = this.encoder.size;
    this.decoder = new Array<string>(this.vocabSize);
    for (const [tok, id] of this.encoder) this.decoder[id] = tok;
    this.sotId = sotIdOf(this.encoder);
    this.eotId = eotIdOf(this.encoder);
    this.bpe = new BytePairEncoder(
      data.merges.map((m) => {
        const sp = m.indexOf(' ');
        return [m.slice(0, sp), m.slice(sp + 1)] as const;
      }),
    );
  }

  /** From `clip-merges.txt` + `clip-vocab.json` in `dir`. */
  static fromDir(dir: string): ClipTokenizer {
    return ClipTokenizer.fromFiles(vocabFilesIn(dir));
  }

  /** From explicit file paths. */
  static fromFiles(files: VocabFiles): ClipTokenizer {
    return new ClipTokenizer(readVocabFiles(files));
  }

  /** From `vocabDir` (the --vocab flag) if given, else $MCLIP_VOCAB; a clear MclipError if neither. */
  static load(vocabDir?: string): ClipTokenizer {
    return ClipTokenizer.fromDir(resolveVocabDir(vocabDir));
  }

  /** The text the tokenizer actually encodes (open_clip `_clean_lower`). */
  clean(text: string): string {
    return cleanLower(text);
  }

  /** BPE ids of `text`, without start/end-of-text. */
  encode(text: string): number[] {
    const ids: number[] = [];
    for (const piece of splitPieces(this.clean(text))) {
      for (const id of this.pieceIds(piece)) ids.push(id);
    }
    return ids;
  }

  /**
   * BPE token strings of `text` (byte-level alphabet, `</w>` ends a word); the special tokens are spelled
   * as open_clip spells them (<start_of_text>, <end_of_text>).
   */
  tokens(text: string): string[] {
    return this.encode(text).map((id) => (id === this.sotId ? SOT_TEXT : id === this.eotId ? EOT_TEXT : this.decoder[id]));
  }

  /**
   * Rows of `[sot, ...ids, eot, 0, ...]`, `contextLength` wide (row-major N x contextLength); a text
   * longer than that is cut and its last id set to end-of-text.
   */
  tokenize(texts: string | readonly string[], contextLength = DEFAULT_CONTEXT_LENGTH): Int32Array {
    check(Number.isInteger(contextLength) && contextLength >= 2, `context length must be an integer >= 2, got ${contextLength}`);
    const list = typeof texts === 'string' ? [texts] : texts;
    const out = new Int32Array(list.length * contextLength);
    list.forEach((text, row) => {
      const ids = this.encode(text);
      const base = row * contextLength;
      out[base] = this.sotId;
      const n = Math.min(ids.length, contextLength - 2);
      for (let i = 0; i < n; i++) out[base + 1 + i] = ids[i];
      out[base + 1 + n] = this.eotId;
    });
    return out;
  }

  /** Text of token ids (see DecodeOptions); invalid UTF-8 becomes U+FFFD. */
  decode(ids: ArrayLike<number>, options: DecodeOptions = {}): string {
    const raw = options.raw === true;
    let start = 0;
    let end = ids.length;
    if (!raw) {
      if (end > 0 && ids[0] === this.sotId) start = 1;
      for (let i = start; i < end; i++) if (ids[i] === this.eotId) end = i;
    }
    const bytes: number[] = [];
    for (let i = start; i < end; i++) {
      const tok = this.decoder[ids[i]];
      check(tok !== undefined, `token id ${ids[i]} is outside the vocabulary (size ${this.vocabSize})`);
      // open_clip decodes the bytes first and replaces '</w>' afterwards; per token is the same for real text
      const t = raw ? tok : tok.replaceAll(EOW, ' ');
      for (const ch of t) bytes.push(BYTE_DECODER.get(ch) ?? 0x20);
    }
    const text = new TextDecoder('utf-8').decode(Uint8Array.from(bytes));
    return raw ? text.replaceAll(EOW, ' ') : text.trimEnd();
  }

  private pieceIds(piece: string): readonly number[] {
    const hit = this.pieceCache.get(piece);
    if (hit) return hit;
    let ids: number[];
    if (piece === SOT_TEXT) ids = [this.sotId];
    else if (piece === EOT_TEXT) ids = [this.eotId];
    else {
      ids = this.bpe.encode(toByteSymbols(piece)).map((sym) => {
        const id = this.encoder.get(sym);
        check(id !== undefined, `BPE symbol ${JSON.stringify(sym)} is not in the vocabulary`);
        return id;
      });
    }
    if (this.pieceCache.size >= 1 << 18) this.pieceCache.clear();
    this.pieceCache.set(piece, ids);
    return ids;
  }
}
