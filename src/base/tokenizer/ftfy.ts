/**
 * ftfy is MIT-licensed (© Robyn Speer and contributors); this is an independent TypeScript re-implementation
 * of its behaviour, checked against its test cases.
 *
 * A port of `ftfy.fix_text` (ftfy 6.3.1) with its default configuration, as used by open_clip's
 * `basic_clean`. Every default step is implemented: HTML unescaping (only when the line has no '<'),
 * the mojibake repair `fix_encoding` (badness heuristic, the ten single-byte code pages, restore_byte_a0,
 * replace_lossy_sequences, utf-8-variants, decode_inconsistent_utf8, Latin-1/Windows-1252 C1 repair),
 * fix_c1_controls, fix_latin_ligatures, fix_character_width, uncurl_quotes, fix_line_breaks,
 * fix_surrogates, remove_terminal_escapes, remove_control_chars and NFC normalisation, repeated until
 * the text stops changing, line by line.
 *
 * Byte strings are represented as "binary strings" (one char per byte, codes 0..255) so that ftfy's byte
 * regexes can be written as ordinary JS regexes.
 */
import { BADNESS_SOURCE, CHARMAP_ENCODINGS, UTF8_DETECTOR_SOURCE } from './ftfy-tables.js';
import { HTML5_ENTITIES } from './html-entities.js';
import { htmlUnescape } from './html-unescape.js';

// ---------------------------------------------------------------------------------------------
// badness heuristic

const BADNESS_RE = new RegExp(BADNESS_SOURCE, 'u');
const UTF8_DETECTOR_RE = new RegExp(UTF8_DETECTOR_SOURCE, 'gu');
const UTF8_DETECTOR_TEST = new RegExp(UTF8_DETECTOR_SOURCE, 'u');

/** ftfy.badness.is_bad: does the text contain a character sequence that is very likely mojibake? */
export function isBad(text: string): boolean {
  return BADNESS_RE.test(text);
}

// ---------------------------------------------------------------------------------------------
// single-byte code pages

interface Charmap {
  name: string;
  sloppy: boolean;
  /** byte -> character */
  decode: string[];
  /** character -> byte, for the characters ftfy's `possible_encoding` accepts */
  encode: Map<string, number>;
}

const CHARMAPS: Charmap[] = CHARMAP_ENCODINGS.map(([name, table]) => {
  const decode = Array.from(table);
  if (decode.length !== 256) throw new Error(`ftfy table ${name} has ${decode.length} entries`);
  const encode = new Map<string, number>();
  // possible_encoding: ASCII except 0x1A, plus whatever bytes 0x80..0xFF and 0x1A decode to.
  for (let b = 0; b < 0x80; b++) if (b !== 0x1a) encode.set(String.fromCharCode(b), b);
  for (let b = 0x80; b < 0x100; b++) encode.set(decode[b], b);
  encode.set(decode[0x1a], 0x1a);
  return { name, sloppy: name.startsWith('sloppy-'), decode, encode };
});
const SLOPPY_1252 = CHARMAPS.find((c) => c.name === 'sloppy-windows-1252')!;
/** Bytes that strict windows-1252 leaves undefined. */
const CP1252_UNDEFINED = new Set([0x81, 0x8d, 0x8f, 0x90, 0x9d]);

/** `text.encode(charmap)` as a binary string, or null when some character is not in the code page. */
function encodeCharmap(text: string, cm: Charmap): string | null {
  let out = '';
  for (const ch of text) {
    const b = cm.encode.get(ch);
    if (b === undefined) return null;
    out += String.fromCharCode(b);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// UTF-8 ("utf-8-variants": strict UTF-8 plus CESU-8 surrogate pairs and Java's C0 80 for U+0000)

/**
 * Decodes a binary string as ftfy's `utf-8-variants` codec does; null where Python raises
 * UnicodeDecodeError. Replicates the codec's `$` quirks (Python's `$` also matches before a final '\n').
 */
export function decodeUtf8Variants(b: string): string | null {
  const n = b.length;
  const at = (i: number): number => (i < n ? b.charCodeAt(i) : -1);
  const cont = (c: number): boolean => c >= 0x80 && c <= 0xbf;
  let out = '';
  let i = 0;
  while (i < n) {
    const c = b.charCodeAt(i);
    if (c < 0x80) {
      out += b[i];
      i += 1;
    } else if (c === 0xc0) {
      // (\xc0(\x80|$)) -> U+0000, consuming two bytes (even when the second is a final '\n')
      const d = at(i + 1);
      if (d === 0x80 || (d === 0x0a && i + 2 === n)) {
        out += '\0';
        i += 2;
      } else return null;
    } else if (c >= 0xc2 && c <= 0xdf) {
      const d = at(i + 1);
      if (!cont(d)) return null;
      out += String.fromCharCode(((c & 0x1f) << 6) | (d & 0x3f));
      i += 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      const d = at(i + 1);
      const e = at(i + 2);
      if (c === 0xed && d >= 0xa0 && d <= 0xbf) {
        // CESU-8: \xed[\xa0-\xaf][\x80-\xbf]\xed[\xb0-\xbf]([\x80-\xbf]|$)
        const f = at(i + 5);
        if (
          d <= 0xaf && cont(e) && at(i + 3) === 0xed && at(i + 4) >= 0xb0 && at(i + 4) <= 0xbf &&
          (cont(f) || (f === 0x0a && i + 6 === n))
        ) {
          const cp = ((d & 0x0f) << 16) + ((e & 0x3f) << 10) + ((at(i + 4) & 0x0f) << 6) + (f & 0x3f) + 0x10000;
          out += String.fromCodePoint(cp);
          i += 6;
          continue;
        }
        return null; // an unpaired surrogate
      }
      const lo = c === 0xe0 ? 0xa0 : 0x80;
      const hi = c === 0xed ? 0x9f : 0xbf;
      if (!(d >= lo && d <= hi) || !cont(e)) return null;
      out += String.fromCharCode(((c & 0x0f) << 12) | ((d & 0x3f) << 6) | (e & 0x3f));
      i += 3;
    } else if (c >= 0xf0 && c <= 0xf4) {
      const d = at(i + 1);
      const lo = c === 0xf0 ? 0x90 : 0x80;
      const hi = c === 0xf4 ? 0x8f : 0xbf;
      if (!(d >= lo && d <= hi) || !cont(at(i + 2)) || !cont(at(i + 3))) return null;
      out += String.fromCodePoint(
        ((c & 0x07) << 18) | ((d & 0x3f) << 12) | ((at(i + 2) & 0x3f) << 6) | (at(i + 3) & 0x3f),
      );
      i += 4;
    } else return null;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// byte-level transcoders

// chardata.ALTERED_UTF8_RE
const ALTERED_UTF8_RE =
  /[\xc2\xc3\xc5\xce\xd0\xd9][ ]|[\xe2\xe3][ ][\x80-\x84\x86-\x9f\xa1-\xbf]|[\xe0-\xe3][\x80-\x84\x86-\x9f\xa1-\xbf][ ]|[\xf0][ ][\x80-\xbf][\x80-\xbf]|[\xf0][\x80-\xbf][ ][\x80-\xbf]|[\xf0][\x80-\xbf][\x80-\xbf][ ]/g;
const ALTERED_UTF8_TEST = new RegExp(ALTERED_UTF8_RE.source);
// fixes.A_GRAVE_WORD_RE
const A_GRAVE_WORD_RE = /\xc3 (?! |quele|quela|quilo|s )/g;
// chardata.LOSSY_UTF8_RE
const LOSSY_UTF8_RE =
  /[\xc2-\xdf][\x1a]|[\xc2-\xc3][?]|\xed[\xa0-\xaf][\x1a?]\xed[\xb0-\xbf][\x1a?\x80-\xbf]|\xed[\xa0-\xaf][\x1a?\x80-\xbf]\xed[\xb0-\xbf][\x1a?]|[\xe0-\xef][\x1a?][\x1a\x80-\xbf]|[\xe0-\xef][\x1a\x80-\xbf][\x1a?]|[\xf0-\xf4][\x1a?][\x1a\x80-\xbf][\x1a\x80-\xbf]|[\xf0-\xf4][\x1a\x80-\xbf][\x1a?][\x1a\x80-\xbf]|[\xf0-\xf4][\x1a\x80-\xbf][\x1a\x80-\xbf][\x1a?]|\x1a/g;

/** fixes.restore_byte_a0 */
function restoreByteA0(b: string): string {
  b = b.replace(A_GRAVE_WORD_RE, '\xc3\xa0 ');
  return b.replace(ALTERED_UTF8_RE, (m) => m.replaceAll(' ', '\xa0'));
}

/** fixes.replace_lossy_sequences */
function replaceLossySequences(b: string): string {
  return b.replace(LOSSY_UTF8_RE, '\xef\xbf\xbd');
}

// ---------------------------------------------------------------------------------------------
// fix_encoding

const ASCII_RE = /^[\x00-\x7f]*$/;
const C1_RE = /[\x80-\x9f]/;
const C1_RE_G = /[\x80-\x9f]/g;

/** fixes.fix_c1_controls: C1 controls -> their (sloppy) Windows-1252 characters. */
export function fixC1Controls(text: string): string {
  return text.replace(C1_RE_G, (c) => SLOPPY_1252.decode[c.charCodeAt(0)]);
}

/** fixes.decode_inconsistent_utf8: fix UTF-8 mojibake embedded in otherwise fine text. */
function decodeInconsistentUtf8(text: string): string {
  return text.replace(UTF8_DETECTOR_RE, (sub) => (sub.length < text.length && isBad(sub) ? fixEncoding(sub) : sub));
}

function fixEncodingOneStep(text: string): string {
  if (text.length === 0) return text;
  if (ASCII_RE.test(text) || !isBad(text)) return text;
  const possible: string[] = [];
  for (const cm of CHARMAPS) {
    let bytes = encodeCharmap(text, cm);
    if (bytes === null) continue;
    possible.push(cm.name);
    if (cm.name !== 'macroman' && ALTERED_UTF8_TEST.test(bytes)) {
      bytes = restoreByteA0(bytes);
    }
    if (cm.sloppy) bytes = replaceLossySequences(bytes);
    const fixed = decodeUtf8Variants(bytes);
    if (fixed !== null) return fixed;
  }
  if (UTF8_DETECTOR_TEST.test(text)) {
    const fixed = decodeInconsistentUtf8(text);
    if (fixed !== text) return fixed;
  }
  // ftfy checks for "windows-1252" (never in the list: only "sloppy-windows-1252" is), so Latin-1 text
  // always takes this branch: try reading its C1 controls as strict Windows-1252.
  if (possible.includes('latin-1')) {
    let fixed = '';
    let ok = true;
    for (const ch of text) {
      const c = ch.charCodeAt(0);
      if (c >= 0x80 && c <= 0x9f) {
        if (CP1252_UNDEFINED.has(c)) {
          ok = false;
          break;
        }
        fixed += SLOPPY_1252.decode[c];
      } else fixed += ch;
    }
    if (ok && fixed !== text) return fixed;
  }
  if (C1_RE.test(text)) return fixC1Controls(text);
  return text;
}

/** ftfy.fix_encoding: undo mojibake (UTF-8 decoded as a single-byte code page), repeatedly. */
export function fixEncoding(text: string): string {
  for (;;) {
    const prev = text;
    text = fixEncodingOneStep(text);
    if (text === prev) return text;
  }
}

// ---------------------------------------------------------------------------------------------
// the simple fixers

let ftfyEntities: Map<string, string> | undefined;

/** chardata.HTML_ENTITIES: '&name;' for every HTML5 name with ';', plus upper-cased forms of lower-case ones. */
function getFtfyEntities(): Map<string, string> {
  if (ftfyEntities) return ftfyEntities;
  const m = new Map<string, string>();
  for (const [name, ch] of Object.entries(HTML5_ENTITIES)) {
    if (!name.endsWith(';')) continue;
    m.set('&' + name, ch);
    if (name === name.toLowerCase()) {
      const upper = '&' + name.toUpperCase();
      if (htmlUnescape(upper) === upper) m.set(upper, ch.toUpperCase());
    }
  }
  return (ftfyEntities = m);
}

const FTFY_ENTITY_RE = /&#?[0-9A-Za-z]{1,24};/g;

/** fixes.unescape_html: only references that end in ';' (and some all-caps names). */
export function unescapeHtmlFtfy(text: string): string {
  if (!text.includes('&')) return text;
  const ents = getFtfyEntities();
  return text.replace(FTFY_ENTITY_RE, (m) => {
    const ch = ents.get(m);
    if (ch !== undefined) return ch;
    if (m.startsWith('&#')) {
      const un = htmlUnescape(m);
      return un.includes(';') ? m : un;
    }
    return m;
  });
}

// Python's \d is any Unicode decimal digit.
const ANSI_RE = /\x1b\[((?:\p{Nd}|;)*)([a-zA-Z])/gu;
const SINGLE_QUOTE_RE = /[\u02bc\u2018-\u201b]/g;
const DOUBLE_QUOTE_RE = /[\u201c-\u201f]/g;
const LIGATURES: Record<string, string> = {
  'Ĳ': 'IJ', 'ĳ': 'ij', 'ŉ': 'ʼn', 'Ǳ': 'DZ', 'ǲ': 'Dz', 'ǳ': 'dz', 'Ǆ': 'DŽ', 'ǅ': 'Dž', 'ǆ': 'dž',
  'Ǉ': 'LJ', 'ǈ': 'Lj', 'ǉ': 'lj', 'Ǌ': 'NJ', 'ǋ': 'Nj', 'ǌ': 'nj',
  'ﬀ': 'ff', 'ﬁ': 'fi', 'ﬂ': 'fl', 'ﬃ': 'ffi', 'ﬄ': 'ffl', 'ﬅ': 'ſt', 'ﬆ': 'st',
};
const LIGATURE_RE = new RegExp(`[${Object.keys(LIGATURES).join('')}]`, 'g');
// U+0000-0008, 000B, 000E-001F, 007F, 206A-206F, FEFF, FFF9-FFFC
const CONTROL_RE = /[\x00-\x08\x0b\x0e-\x1f\x7f\u206a-\u206f\ufeff\ufff9-\ufffc]/g;

let widthMap: Map<string, string> | undefined;
const WIDTH_RE = /[\u3000\uff01-\uffef]/g;

/** fixes.fix_character_width: fullwidth/halfwidth forms (U+FF01..U+FFEF) -> their NFKC form, U+3000 -> ' '. */
export function fixCharacterWidth(text: string): string {
  if (!widthMap) {
    widthMap = new Map([['\u3000', ' ']]);
    for (let c = 0xff01; c < 0xfff0; c++) {
      const ch = String.fromCharCode(c);
      const alt = ch.normalize('NFKC');
      if (alt !== ch) widthMap.set(ch, alt);
    }
  }
  const wm = widthMap;
  return text.replace(WIDTH_RE, (c) => wm.get(c) ?? c);
}

export const fixLatinLigatures = (t: string): string => t.replace(LIGATURE_RE, (c) => LIGATURES[c]);
export const uncurlQuotes = (t: string): string => t.replace(DOUBLE_QUOTE_RE, '"').replace(SINGLE_QUOTE_RE, "'");
export const fixLineBreaks = (t: string): string =>
  t.replaceAll('\r\n', '\n').replaceAll('\r', '\n').replaceAll('\u2028', '\n').replaceAll('\u2029', '\n').replaceAll('\x85', '\n');
/** Lone surrogates -> U+FFFD (pairs are already single code points in a JS string). */
export const fixSurrogates = (t: string): string => t.replace(/\p{Cs}/gu, '\ufffd');
export const removeTerminalEscapes = (t: string): string => t.replace(ANSI_RE, '');
export const removeControlChars = (t: string): string => t.replace(CONTROL_RE, '');

// ---------------------------------------------------------------------------------------------
// fix_text

function fixSegment(text: string, unescapeHtml: boolean): string {
  for (;;) {
    const orig = text;
    if (unescapeHtml) text = unescapeHtmlFtfy(text);
    text = fixEncoding(text);
    text = fixC1Controls(text);
    text = fixLatinLigatures(text);
    text = fixCharacterWidth(text);
    text = uncurlQuotes(text);
    text = fixLineBreaks(text);
    text = fixSurrogates(text);
    text = removeTerminalEscapes(text);
    text = removeControlChars(text);
    text = text.normalize('NFC');
    if (text === orig) return text;
  }
}

/** Characters that no ftfy step touches in otherwise-ASCII text (fast path). */
const ASCII_SAFE_RE = /^[\t\n\f\x20-\x25\x27-\x7e]*$/;

/** `ftfy.fix_text(text)` with ftfy 6.3.1's default configuration. */
export function fixText(text: string): string {
  if (ASCII_SAFE_RE.test(text)) return text;
  const MAX = 1_000_000;
  let unescape = true; // unescape_html="auto": switched off for good by the first line containing '<'
  let out = '';
  let pos = 0;
  // Python slices by code point; max_decode_length only matters for million-character lines.
  while (pos < text.length) {
    let brk = text.indexOf('\n', pos) + 1;
    if (brk === 0) brk = text.length;
    if (brk - pos > MAX) brk = pos + MAX;
    const segment = text.slice(pos, brk);
    if (unescape && segment.includes('<')) unescape = false;
    out += fixSegment(segment, unescape);
    pos = brk;
  }
  return out;
}
