import { readFileSync } from 'node:fs';

import { it } from 'vitest';

import { fixture, HAVE_FIXTURES, describeFixtures } from '../paths.js';
import { errorLines, runCli, show, STACK_FRAME } from './helpers.js';

interface Case {
  text: string;
  ids: number[];
  truncated: boolean;
  cleaned: string;
}

const SOT = 49406;
const EOT = 49407;

describeFixtures('mclip tokenize', { concurrent: true }, () => {
  const VOCAB = fixture('tokenizer');
  const cases: Case[] = HAVE_FIXTURES ? JSON.parse(readFileSync(fixture('tokenizer', 'cases.json'), 'utf8')) : [];
  const byText = (t: string): Case => {
    const c = cases.find((x) => x.text === t);
    if (!c) throw new Error(`no case ${JSON.stringify(t)} in cases.json`);
    return c;
  };
  const pickedTexts = [
    'A photo of a dog.',
    '1234567890', // numeric-looking: must stay a string, not become a number
    "IT'S LOUD, DON'T SHOUT",
    'it’s a curly apostrophe', // ftfy: curly -> ASCII
    'caf&eacute; &quot;quoted&quot; &#39;apos&#39; &#x263A;', // html unescape
    'mojibake: sÃ©ance and cafÃ©', // ftfy mojibake fix
    'ＦＵＬＬＷＩＤＴＨ\u3000ｔｅｘｔ １２３', // ftfy fullwidth -> halfwidth
    '一只猫坐在垫子上',
    '<start_of_text>',
    '',
  ];
  const picked = (): Case[] => [
    ...pickedTexts.map(byText),
    ...cases.filter((c) => c.truncated), // the long caption and the 76 × "a"
    cases.find((c) => c.ids[76] === EOT && !c.truncated)!, // exactly 77 ids, not cut
  ];

  it('--json gives the official ids for several cases (ftfy-changed, truncated, exact fit)', async ({ expect }) => {
    const sel = picked();
    expect(sel.filter((c) => c.truncated).length).toBeGreaterThanOrEqual(2);
    expect(sel.filter((c) => c.cleaned !== c.text.trim().toLowerCase()).length).toBeGreaterThanOrEqual(4);
    const r = await runCli(['tokenize', '--vocab', VOCAB, '--json', ...sel.map((c) => c.text)]);
    expect(r.status, show(r)).toBe(0);
    const out = JSON.parse(r.stdout) as { text: string; ids: number[] }[];
    expect(out).toHaveLength(sel.length);
    sel.forEach((c, i) => {
      expect(out[i].text).toBe(c.text);
      expect(out[i].ids, c.text).toEqual(c.ids);
    });
    // sanity on the reference itself: truncated rows end with EOT at 76 and have no padding
    for (const c of sel.filter((x) => x.truncated)) {
      expect(c.ids[0]).toBe(SOT);
      expect(c.ids[76]).toBe(EOT);
      expect(c.ids.includes(0)).toBe(false);
    }
  });

  it('plain output is one "text<TAB>ids" line per text', async ({ expect }) => {
    const r = await runCli(['tokenize', '--vocab', VOCAB, 'a photo of a cat', 'a diagram']);
    expect(r.status, show(r)).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    const [t0, ids0] = lines[0].split('\t');
    expect(JSON.parse(t0)).toBe('a photo of a cat');
    expect(ids0.split(' ').map(Number)).toEqual(byText('a photo of a cat').ids);
    expect(lines[1].split('\t')[1].split(' ').map(Number)).toEqual(byText('a diagram').ids);
  });

  it('--context-length cuts and ends with EOT', async ({ expect }) => {
    const r = await runCli(['tokenize', '--vocab', VOCAB, '--json', '--context-length', '5', 'a photo of a dog']);
    expect(r.status, show(r)).toBe(0);
    expect(JSON.parse(r.stdout)[0].ids).toEqual([SOT, 320, 1125, 539, EOT]);
  });

  it('MCLIP_VOCAB works instead of --vocab', async ({ expect }) => {
    const c = [byText('a bowl of fruit on a wooden table'), byText('naïve résumé façade')];
    const r = await runCli(['tokenize', '--json', ...c.map((x) => x.text)], { env: { MCLIP_VOCAB: VOCAB } });
    expect(r.status, show(r)).toBe(0);
    expect((JSON.parse(r.stdout) as { ids: number[] }[]).map((o) => o.ids)).toEqual(c.map((x) => x.ids));
  });

  it('--vocab takes precedence over a broken MCLIP_VOCAB', async ({ expect }) => {
    const r = await runCli(['tokenize', '--json', '--vocab', VOCAB, 'a diagram'], { env: { MCLIP_VOCAB: '/nonexistent/vocab' } });
    expect(r.status, show(r)).toBe(0);
    expect(JSON.parse(r.stdout)[0].ids).toEqual(byText('a diagram').ids);
  });

  it('no vocabulary at all: one-line error naming --vocab and MCLIP_VOCAB, exit 1', async ({ expect }) => {
    const r = await runCli(['tokenize', 'a photo of a dog']);
    expect(r.status, show(r)).toBe(1);
    expect(r.stdout).toBe('');
    const lines = errorLines(r.stderr);
    expect(lines, show(r)).toHaveLength(1);
    expect(lines[0]).toMatch(/^mclip: error: /);
    expect(lines[0]).toContain('--vocab');
    expect(lines[0]).toContain('MCLIP_VOCAB');
    expect(r.stderr).not.toMatch(STACK_FRAME);
  });

  it('a MCLIP_VOCAB that is not a folder: one-line error naming MCLIP_VOCAB, exit 1', async ({ expect }) => {
    const r = await runCli(['tokenize', 'x'], { env: { MCLIP_VOCAB: '/nonexistent/vocab' } });
    expect(r.status, show(r)).toBe(1);
    const lines = errorLines(r.stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^mclip: error: MCLIP_VOCAB \/nonexistent\/vocab: not a directory/);
  });

  // Texts after `--` are tokenized too, so captions starting with '-' can be given.
  it('texts after -- are tokenized (a caption starting with "-")', async ({ expect }) => {
    const r = await runCli(['tokenize', '--vocab', VOCAB, '--json', 'a diagram', '--', '-5 apples']);
    expect(r.status, show(r)).toBe(0);
    const out = JSON.parse(r.stdout) as { text: string; ids: number[] }[];
    expect(out.map((o) => o.text)).toEqual(['a diagram', '-5 apples']);
    // '-', '5', 'apples' = 3 pieces: SOT + ≥3 ids + EOT (the BPE itself is covered above)
    expect(out[1].ids[0]).toBe(SOT);
    expect(out[1].ids.indexOf(EOT)).toBeGreaterThan(3);
  });
});
