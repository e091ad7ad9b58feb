/**
 * Python's `html.unescape` (3.11), exactly: named references from the HTML5 table (also the legacy ones
 * without ';', with longest-prefix matching), decimal / hex numeric references with Python's replacement
 * rules for invalid code points.
 */
import { HTML5_ENTITIES, INVALID_CHARREFS, INVALID_CODEPOINTS } from './html-entities.js';

// Python: re.compile(r'&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)')
const CHARREF_RE = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/gu;

const hasOwn = (o: object, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);

/** Decodes one numeric character reference body (`#123`, `#x1F;`) the way Python's html module does. */
export function decodeNumericRef(body: string): string {
  const digits = body.endsWith(';') ? body.slice(0, -1) : body;
  const hex = digits[1] === 'x' || digits[1] === 'X';
  // parseInt of a very long digit run loses precision but stays > 0x10FFFF, which is all that matters.
  const num = hex ? parseInt(digits.slice(2), 16) : parseInt(digits.slice(1), 10);
  const repl = INVALID_CHARREFS.get(num);
  if (repl !== undefined) return repl;
  if ((num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff) return '\ufffd';
  if (INVALID_CODEPOINTS.has(num)) return '';
  return String.fromCodePoint(num);
}

function replaceCharref(match: string, s: string): string {
  if (s[0] === '#') return decodeNumericRef(s);
  if (hasOwn(HTML5_ENTITIES, s)) return HTML5_ENTITIES[s];
  // Longest prefix that is a (legacy, ';'-less) entity name, as the HTML5 standard defines.
  // `s` is at most 33 UTF-16 units; Python slices by code point, so walk code points.
  const cps = Array.from(s);
  for (let x = cps.length - 1; x > 1; x--) {
    const head = cps.slice(0, x).join('');
    if (hasOwn(HTML5_ENTITIES, head)) return HTML5_ENTITIES[head] + cps.slice(x).join('');
  }
  return match;
}

/** Python `html.unescape(s)`. */
export function htmlUnescape(s: string): string {
  if (!s.includes('&')) return s;
  return s.replace(CHARREF_RE, replaceCharref);
}
