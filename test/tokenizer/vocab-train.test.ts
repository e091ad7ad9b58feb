import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { MclipError } from '../../src/errors.js';
import { ClipTokenizer, cleanLower, trainVocab, writeVocab } from '../../src/base/tokenizer/index.js';

/** Deterministic xorshift32 in [0, 1). */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

const OBJECTS = ['dog', 'cat', 'car', 'house', 'tree', 'bird', 'boat', 'person', 'bicycle', 'pizza', 'mountain', 'street'];
const ADJS = ['red', 'small', 'old', 'happy', 'wooden', 'shiny', 'fluffy', 'crowded', 'snowy'];
const PLACES = ['in a park', 'on the beach', 'at night', 'near a lake', 'in the city', 'under the sky'];

function captions(n: number, seed = 7): string[] {
  const r = rng(seed);
  const pick = <T>(a: T[]): T => a[Math.floor(r() * a.length)];
  return Array.from({ length: n }, () => `A photo of a ${pick(ADJS)} ${pick(OBJECTS)} ${pick(PLACES)}`);
}

describe('trainVocab / writeVocab', () => {
  it('trains a CLIP-layout vocabulary that ClipTokenizer loads and round-trips', () => {
    const corpus = [...captions(3000), 'Un café très chaud', 'naïve façade', '<start_of_text> special'];
    const size = 800;
    const res = trainVocab(corpus, size);
    const entries = Object.entries(res.vocab);
    expect(entries.length).toBe(514 + res.merges.length);
    expect(new Set(entries.map((e) => e[1])).size).toBe(entries.length);
    expect(res.vocab['<|startoftext|>']).toBe(entries.length - 2);
    expect(res.vocab['<|endoftext|>']).toBe(entries.length - 1);
    expect(res.vocab['!']).toBe(0);
    expect(res.vocab['!</w>']).toBe(256);

    const dir = mkdtempSync(join(tmpdir(), 'mclip-train-'));
    writeVocab(dir, res);
    expect(readdirSync(dir).sort()).toEqual(['clip-merges.txt', 'clip-vocab.json']); // no temp files left
    expect(readFileSync(join(dir, 'clip-merges.txt'), 'utf8').split('\n')[0]).toBe('#version: 0.2');

    const tok = ClipTokenizer.fromDir(dir);
    expect(tok.vocabSize).toBe(entries.length);
    expect(tok.sotId).toBe(entries.length - 2);
    expect(tok.eotId).toBe(entries.length - 1);

    for (const text of corpus.slice(0, 200)) {
      const ids = tok.encode(text);
      expect(ids.every((id) => id >= 0 && id < tok.vocabSize)).toBe(true);
      expect(tok.decode(ids)).toBe(cleanLower(text));
    }
    for (const text of ['Un café très chaud', 'naïve façade', 'zebra quokka 🐶', 'dog, cat.']) {
      expect(tok.decode(tok.encode(text)).replaceAll(' ', '')).toBe(cleanLower(text).replaceAll(' ', ''));
    }
    // frequent words become single tokens
    for (const w of ['photo', 'of', 'dog', 'fluffy', 'mountain']) expect(tok.tokens(w)).toEqual([`${w}</w>`]);
    const row = tok.tokenize(['a photo of a dog'], 16);
    expect(row[0]).toBe(tok.sotId);
    expect(Array.from(row.subarray(1, 7))).toEqual([...tok.encode('a photo of a dog'), tok.eotId]);
  });

  it('training is deterministic', () => {
    const corpus = captions(500, 3);
    expect(trainVocab(corpus, 600)).toEqual(trainVocab(corpus, 600));
  });

  it('stops early when the corpus runs out of pairs', () => {
    const res = trainVocab(['ab ab ab'], 600);
    expect(res.merges).toEqual(['a b</w>']);
    expect(Object.keys(res.vocab).length).toBe(515);
  });

  it('rejects sizes below 514', () => {
    expect(() => trainVocab(['x'], 513)).toThrow(MclipError);
    expect(() => trainVocab(['x'], 514)).not.toThrow();
  });

  it('50k captions -> 8k vocabulary well under a minute', () => {
    // a corpus with a large, Zipf-like vocabulary of pseudo-words so that 7486 merges are actually needed
    const r = rng(11);
    const letters = 'etaoinshrdlucmfwypvbgkjqxz'.split('').flatMap((c, i) => Array<string>(26 - i).fill(c));
    const lex = Array.from({ length: 60_000 }, () => {
      let w = '';
      const n = 2 + Math.floor(r() * 8);
      for (let j = 0; j < n; j++) w += letters[Math.floor(r() * letters.length)];
      return w;
    });
    const corpus = Array.from({ length: 50_000 }, () => {
      const n = 5 + Math.floor(r() * 12);
      const ws: string[] = [];
      for (let j = 0; j < n; j++) ws.push(lex[Math.floor(Math.pow(r(), 2) * lex.length)]);
      return ws.join(' ') + '.';
    });
    const t0 = performance.now();
    const res = trainVocab(corpus, 8000);
    const s = (performance.now() - t0) / 1000;
    console.log(`[vocab-train] 50k captions -> ${Object.keys(res.vocab).length} tokens in ${s.toFixed(1)} s`);
    expect(res.merges.length).toBe(8000 - 514);
    expect(s).toBeLessThan(60);
    const dir = mkdtempSync(join(tmpdir(), 'mclip-train-'));
    writeVocab(dir, res);
    expect(existsSync(join(dir, 'clip-vocab.json'))).toBe(true);
    const tok = ClipTokenizer.fromDir(dir);
    for (const text of corpus.slice(0, 100)) expect(tok.decode(tok.encode(text)).replaceAll(' ', '')).toBe(text.replaceAll(' ', ''));
  });
});
