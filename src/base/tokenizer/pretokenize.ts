/**
 * CLIP's pre-tokenisation: the cleaned, lower-cased text is split with open_clip's regex (Python `regex`,
 * IGNORECASE)
 *   <start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
 * Everything the pattern does not match (whitespace) is dropped. `\s` is the Unicode White_Space set as
 * in the `regex` module (JS's own `\s` would also swallow U+FEFF).
 */

export const SOT_TEXT = '<start_of_text>';
export const EOT_TEXT = '<end_of_text>';

const WS = '\\t-\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const PIECE_RE = new RegExp(
  `${SOT_TEXT}|${EOT_TEXT}|'s|'t|'re|'ve|'m|'ll|'d|\\p{L}+|\\p{N}|[^${WS}\\p{L}\\p{N}]+`,
  'giu',
);

/** `regex.findall(pat, text)`. */
export function splitPieces(text: string): string[] {
  return text.match(PIECE_RE) ?? [];
}
