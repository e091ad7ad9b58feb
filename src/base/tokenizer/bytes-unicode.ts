/**
 * GPT-2 / CLIP's reversible byte -> unicode-character map (`bytes_to_unicode`): printable Latin-1 bytes
 * map to themselves, the other 68 bytes to U+0100.. in order, so every byte string is a string of
 * visible characters the BPE can work on.
 */

function build(): string[] {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const map = new Array<string>(256);
  for (const b of bs) map[b] = String.fromCharCode(b);
  let n = 0;
  for (let b = 0; b < 256; b++) if (map[b] === undefined) map[b] = String.fromCharCode(256 + n++);
  return map;
}

/** byte value -> its character. */
export const BYTE_ENCODER: readonly string[] = build();

/** character -> byte value. */
export const BYTE_DECODER: ReadonlyMap<string, number> = new Map(BYTE_ENCODER.map((c, b) => [c, b]));

/** The 256 symbols in CLIP's vocabulary order (`list(bytes_to_unicode().values())`: printable bytes first). */
export const BYTE_SYMBOLS: readonly string[] = (() => {
  const order: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) order.push(b);
  for (let b = 0xa1; b <= 0xac; b++) order.push(b);
  for (let b = 0xae; b <= 0xff; b++) order.push(b);
  for (let b = 0; b < 256; b++) if (!order.includes(b)) order.push(b);
  return order.map((b) => BYTE_ENCODER[b]);
})();

const utf8 = new TextEncoder();
const PRINTABLE_ASCII_RE = /^[!-~]*$/;

/** UTF-8 bytes of `text`, each as its byte-level character. */
export function toByteSymbols(text: string): string {
  if (PRINTABLE_ASCII_RE.test(text)) return text; // '!'..'~' map to themselves
  let out = '';
  for (const b of utf8.encode(text)) out += BYTE_ENCODER[b];
  return out;
}

/** Inverse of toByteSymbols (invalid UTF-8 becomes U+FFFD, like Python's errors="replace"). */
export function fromByteSymbols(symbols: string): string {
  const bytes: number[] = [];
  for (const ch of symbols) {
    const b = BYTE_DECODER.get(ch);
    if (b === undefined) throw new Error(`not a byte-level symbol: ${JSON.stringify(ch)}`);
    bytes.push(b);
  }
  return new TextDecoder('utf-8').decode(Uint8Array.from(bytes));
}
