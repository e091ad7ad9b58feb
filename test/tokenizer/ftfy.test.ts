import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { ClipTokenizer, fixText, htmlUnescape } from '../../src/base/tokenizer/index.js';
import { fixture, describeFixtures } from '../paths.js';

const here = dirname(fileURLToPath(import.meta.url));
const ref: { cases: { text: string; fixed: string; ids: number[] }[] } = JSON.parse(
  readFileSync(join(here, 'open-clip-reference.json'), 'utf8'),
);

describe('ftfy.fix_text port', () => {
  it(`matches ftfy 6.3.1 on ${ref.cases.length} reference texts`, () => {
    const bad = ref.cases.filter((c) => fixText(c.text) !== c.fixed).map((c) => JSON.stringify(c.text));
    expect(bad).toEqual([]);
  });

  it('individual fixes', () => {
    expect(fixText('mojibake: sÃ©ance and cafÃ©')).toBe('mojibake: séance and café');
    expect(fixText('â€œquotedâ€\x9d')).toBe('"quoted"');
    expect(fixText('“smart” ‘quotes’')).toBe('"smart" \'quotes\'');
    expect(fixText('ﬁne ﬂow')).toBe('fine flow');
    expect(fixText('ＦＵＬＬ\u3000ｗｉｄｔｈ')).toBe('FULL width');
    expect(fixText('a\r\nb\rc\u2028d')).toBe('a\nb\nc\nd');
    expect(fixText('\ufeffx\x00y\x07 \x1b[31mred\x1b[0m')).toBe('xy red');
    expect(fixText('e\u0301')).toBe('é');
    expect(fixText('caf&eacute; P&EACUTE;REZ &amp;amp; &notit;')).toBe('café PÉREZ & &notit;');
    expect(fixText('&lt;b&gt; <i>')).toBe('&lt;b&gt; <i>'); // no unescaping in a line with '<'
    expect(fixText('soft\xadhyphen zero\u200bwidth')).toBe('soft\xadhyphen zero\u200bwidth');
  });
});

describe('Python html.unescape port', () => {
  it('named, legacy (no ;) and numeric references', () => {
    expect(htmlUnescape('fish &amp chips &amp; &lt;&gt;')).toBe('fish & chips & <>');
    expect(htmlUnescape('&notit; &notin; &ampxyz &copy2024')).toBe('¬it; ∉ &xyz ©2024');
    expect(htmlUnescape('&#39; &#x263A; &#x263a &#65&#66')).toBe("' ☺ ☺ AB");
    expect(htmlUnescape('&#0; &#128; &#x110000; &#xD800; &#1; &#13;')).toBe('\ufffd € \ufffd \ufffd  \r');
    expect(htmlUnescape('&bogus; & &; &#; &#x;')).toBe('&bogus; & &; &#; &#x;');
  });
});

describeFixtures('encode matches open_clip SimpleTokenizer.encode', () => {
  it(`on ${ref.cases.length} reference texts`, () => {
    const tok = ClipTokenizer.fromDir(fixture('tokenizer'));
    const bad = ref.cases
      .filter((c) => JSON.stringify(tok.encode(c.text)) !== JSON.stringify(c.ids))
      .map((c) => JSON.stringify(c.text));
    expect(bad).toEqual([]);
  });
});
