import { mkdtempSync, writeFileSync, mkdirSync } from 'node:fs';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';

import { MclipError } from '../../src/errors.js';
import { ClipTokenizer, cleanLower, resolveVocabDir, VOCAB_ENV } from '../../src/base/tokenizer/index.js';
import { HAVE_FIXTURES, fixture, describeFixtures, missingFixtures } from '../paths.js';

interface Case {
  text: string;
  ids: number[];
  cleaned: string;
  tokens: string[];
  n_bpe: number;
  truncated: boolean;
}

const VOCAB_DIR = fixture('tokenizer');

describeFixtures('ClipTokenizer vs the official open_clip tokenizer (fixture)', () => {
  const tok = HAVE_FIXTURES ? ClipTokenizer.fromDir(VOCAB_DIR) : (undefined as unknown as ClipTokenizer);
  const cases: Case[] = HAVE_FIXTURES ? JSON.parse(readFileSync(fixture('tokenizer', 'cases.json'), 'utf8')) : [];

  it('loads the CLIP vocabulary', () => {
    expect(tok.vocabSize).toBe(49408);
    expect(tok.sotId).toBe(49406);
    expect(tok.eotId).toBe(49407);
    expect(cases.length).toBe(87);
  });

  it('all 87 cases: ids, cleaned text, tokens, BPE count', () => {
    const failures: string[] = [];
    for (const c of cases) {
      const row = Array.from(tok.tokenize([c.text]));
      const cleaned = cleanLower(c.text);
      const tokens = tok.tokens(c.text);
      const ok =
        JSON.stringify(row) === JSON.stringify(c.ids) &&
        cleaned === c.cleaned &&
        JSON.stringify(tokens.slice(0, 75)) === JSON.stringify(c.tokens) &&
        tokens.length === c.n_bpe &&
        (c.n_bpe + 2 > 77) === c.truncated;
      if (!ok) failures.push(JSON.stringify(c.text));
    }
    expect(failures).toEqual([]);
  });

  it('tokenize batches rows and honours the context length', () => {
    const texts = cases.map((c) => c.text);
    const all = tok.tokenize(texts);
    expect(all.length).toBe(texts.length * 77);
    cases.forEach((c, i) => expect(Array.from(all.subarray(i * 77, (i + 1) * 77))).toEqual(c.ids));
    const short = tok.tokenize(['a photo of a cat'], 5);
    expect(Array.from(short)).toEqual([49406, 320, 1125, 539, 49407]);
    expect(Array.from(tok.tokenize('a', 4))).toEqual([49406, 320, 49407, 0]);
    expect(() => tok.tokenize(['x'], 1)).toThrow(MclipError);
  });

  it('decode inverts encode (up to spacing around punctuation)', () => {
    expect(tok.decode(tok.tokenize(['A photo of a CAT']))).toBe('a photo of a cat');
    expect(tok.decode(tok.encode('Hello, world!'))).toBe('hello , world !');
    expect(tok.decode(tok.encode('café 🐶 猫の写真'))).toBe('café 🐶 猫の写真');
    expect(tok.decode([320, 49407, 0, 0], { raw: true })).toBe('a <|endoftext|>!!');
  });

  it('tokenizes 10k short captions in under a second after warm-up', () => {
    const objs = ['dog', 'cat', 'car', 'house', 'tree', 'bird', 'boat', 'person', 'bicycle', 'pizza'];
    const adjs = ['red', 'small', 'old', 'happy', 'wooden', 'shiny', 'fluffy'];
    const caps = Array.from(
      { length: 10_000 },
      (_, i) => `A photo of a ${adjs[i % 7]} ${objs[(i * 3) % 10]} next to ${i % 13} ${objs[(i * 7) % 10]}s, taken in ${1990 + (i % 30)}.`,
    );
    tok.tokenize(caps); // warm-up (BPE caches, JIT)
    const t0 = performance.now();
    const out = tok.tokenize(caps);
    const ms = performance.now() - t0;
    console.log(`[tokenizer] 10k captions: ${ms.toFixed(1)} ms`);
    expect(out.length).toBe(10_000 * 77);
    expect(ms).toBeLessThan(1000);
  });
});

describe('vocabulary location', () => {
  const saved = process.env[VOCAB_ENV];
  afterEach(() => {
    if (saved === undefined) delete process.env[VOCAB_ENV];
    else process.env[VOCAB_ENV] = saved;
  });

  it('without --vocab or MCLIP_VOCAB: a one-line MclipError that says what to do', () => {
    delete process.env[VOCAB_ENV];
    let err: unknown;
    try {
      resolveVocabDir();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MclipError);
    const msg = (err as Error).message;
    expect(msg).toContain('--vocab');
    expect(msg).toContain('MCLIP_VOCAB');
    expect(msg).not.toContain('\n');
  });

  it('flag first, then the environment; missing files are named', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mclip-vocab-'));
    process.env[VOCAB_ENV] = dir;
    expect(() => resolveVocabDir()).toThrow(/clip-merges\.txt/);
    writeFileSync(join(dir, 'clip-merges.txt'), '#version: 0.2\n');
    writeFileSync(join(dir, 'clip-vocab.json'), '{}');
    expect(resolveVocabDir()).toBe(dir);
    const other = join(dir, 'sub');
    mkdirSync(other);
    expect(() => resolveVocabDir(other)).toThrow(/--vocab .*sub: missing/);
    expect(() => resolveVocabDir(join(dir, 'nope'))).toThrow(/not a directory/);
    if (!missingFixtures('the official-vocabulary part of "flag first, then the environment"')) {
      expect(resolveVocabDir(VOCAB_DIR)).toBe(VOCAB_DIR);
      expect(ClipTokenizer.load(VOCAB_DIR).vocabSize).toBe(49408);
    }
  });

  it('malformed vocabulary files give MclipErrors naming the file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mclip-vocab-'));
    writeFileSync(join(dir, 'clip-merges.txt'), '#version: 0.2\n');
    writeFileSync(join(dir, 'clip-vocab.json'), '{"a": 0');
    expect(() => ClipTokenizer.fromDir(dir)).toThrow(/clip-vocab\.json: not valid JSON/);
    writeFileSync(join(dir, 'clip-vocab.json'), '{"a": 0, "b": 0}');
    expect(() => ClipTokenizer.fromDir(dir)).toThrow(MclipError);
  });
});
