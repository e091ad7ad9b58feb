/**
 * open_clip's text clean-up for clean='lower' (`_clean_lower`):
 *   whitespace_clean(basic_clean(text)).lower()
 * with basic_clean = ftfy.fix_text, html.unescape twice, strip; whitespace_clean = " ".join(text.split()).
 */
import { PY_WHITESPACE } from './ftfy-tables.js';
import { fixText } from './ftfy.js';
import { htmlUnescape } from './html-unescape.js';

const WS_CLASS = Array.from(PY_WHITESPACE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join('');
const WS_RUN_RE = new RegExp(`[${WS_CLASS}]+`, 'g');
const WS_EDGES_RE = new RegExp(`^[${WS_CLASS}]+|[${WS_CLASS}]+$`, 'g');

/** Python `str.strip()` (no argument). */
export function pyStrip(text: string): string {
  return text.replace(WS_EDGES_RE, '');
}

/** Python `" ".join(text.split())`. */
export function whitespaceClean(text: string): string {
  return pyStrip(text).replace(WS_RUN_RE, ' ');
}

/** open_clip `basic_clean`: ftfy.fix_text, html.unescape twice, strip. */
export function basicClean(text: string): string {
  return pyStrip(htmlUnescape(htmlUnescape(fixText(text))));
}

/**
 * Python `str.lower()`: full Unicode lower-casing with the final-sigma rule ('İ' -> 'i̇', 'ΟΔΟΣ' -> 'οδος'),
 * which is what JS `toLowerCase()` implements too (locale-independent).
 */
export function pyLower(text: string): string {
  return text.toLowerCase();
}

/** open_clip `_clean_lower`: the text the CLIP tokenizer splits and encodes. */
export function cleanLower(text: string): string {
  return pyLower(whitespaceClean(basicClean(text)));
}
