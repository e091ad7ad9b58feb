import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { errorLines, runCli, show, STACK_FRAME, syntheticCorpus, tempDir, type CliResult } from './helpers.js';

const SIZE = 600;

describe('mclip vocab train → mclip tokenize --vocab', () => {
  const tmp = tempDir('vocab');
  const corpusFile = join(tmp.dir, 'corpus.txt');
  const outDir = join(tmp.dir, 'v600');
  let train: CliResult;

  beforeAll(async () => {
    writeFileSync(corpusFile, syntheticCorpus().join('\n') + '\n');
    train = await runCli(['vocab', 'train', '--texts', corpusFile, '--size', String(SIZE), '--out', outDir]);
  });
  afterAll(() => tmp.cleanup());

  it('writes clip-merges.txt and clip-vocab.json of exactly --size tokens in the CLIP layout', () => {
    expect(train.status, show(train)).toBe(0);
    const info = JSON.parse(train.stdout) as { merges: string; vocab: string; size: number };
    expect(info.size).toBe(SIZE);
    expect(info.merges).toBe(join(outDir, 'clip-merges.txt'));
    expect(info.vocab).toBe(join(outDir, 'clip-vocab.json'));
    expect(existsSync(info.merges) && existsSync(info.vocab)).toBe(true);

    const merges = readFileSync(info.merges, 'utf8').split('\n').filter((l) => l.length > 0);
    expect(merges[0]).toBe('#version: 0.2');
    expect(merges.length - 1).toBe(SIZE - 514); // one merge per token beyond 512 bytes + 2 specials
    for (const m of merges.slice(1)) expect(m.split(' ')).toHaveLength(2);

    const vocab = JSON.parse(readFileSync(info.vocab, 'utf8')) as Record<string, number>;
    const ids = Object.values(vocab).sort((a, b) => a - b);
    expect(ids).toEqual(Array.from({ length: SIZE }, (_, i) => i));
    expect(vocab['<|startoftext|>']).toBe(SIZE - 2);
    expect(vocab['<|endoftext|>']).toBe(SIZE - 1);
    // the first merge is a token right after the 512 byte symbols
    const [a, b] = merges[1].split(' ');
    expect(vocab[a + b]).toBe(512);
    expect(train.stderr).toMatch(new RegExp(`vocab of ${SIZE} tokens \\(${SIZE - 514} merges\\)`));
  });

  it('tokenize --vocab DIR uses it: ids < 600, SOT 598, EOT 599, decodes back to the text', async () => {
    expect(train.status, show(train)).toBe(0);
    const corpusLine = syntheticCorpus()[0];
    const texts = ['a photo of a dog', corpusLine, 'Zebra XYLOPHONE!'];
    const r = await runCli(['tokenize', '--vocab', outDir, '--json', ...texts]);
    expect(r.status, show(r)).toBe(0);
    const rows = (JSON.parse(r.stdout) as { ids: number[] }[]).map((o) => o.ids);
    const vocab = JSON.parse(readFileSync(join(outDir, 'clip-vocab.json'), 'utf8')) as Record<string, number>;
    const decoder = new Map(Object.entries(vocab).map(([k, v]) => [v, k]));
    rows.forEach((ids, i) => {
      expect(ids).toHaveLength(77);
      expect(ids[0]).toBe(598);
      const eot = ids.indexOf(599);
      expect(eot).toBeGreaterThan(1);
      expect(ids.slice(eot + 1).every((x) => x === 0)).toBe(true);
      const body = ids.slice(1, eot);
      expect(Math.max(...body)).toBeLessThan(598);
      // printable ASCII maps to itself in CLIP's byte alphabet: concatenating the tokens and turning </w>
      // into spaces gives the cleaned (lower-cased) text back
      const decoded = body.map((id) => decoder.get(id)!).join('').replace(/<\/w>/g, ' ').trim();
      expect(decoded).toBe(texts[i].toLowerCase().replace('!', ' !'));
    });
    // the corpus line must use merged tokens (fewer ids than characters)
    const nCorpus = rows[1].indexOf(599) - 1;
    expect(nCorpus).toBeLessThan(corpusLine.replace(/ /g, '').length);
  });

  it('--size below the minimum: one-line error, exit 1', async () => {
    const r = await runCli(['vocab', 'train', '--texts', corpusFile, '--size', '100', '--out', join(tmp.dir, 'small')]);
    expect(r.status, show(r)).toBe(1);
    const lines = errorLines(r.stderr);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toBe('mclip: error: --size must be an integer ≥ 514, got 100');
    expect(r.stderr).not.toMatch(STACK_FRAME);
    expect(existsSync(join(tmp.dir, 'small'))).toBe(false);
  });

  it('a missing caption file: one-line error, exit 1', async () => {
    const missing = join(tmp.dir, 'nope.txt');
    const r = await runCli(['vocab', 'train', '--texts', missing, '--size', '600', '--out', join(tmp.dir, 'x')]);
    expect(r.status, show(r)).toBe(1);
    expect(errorLines(r.stderr)).toEqual([`mclip: error: ${missing}: caption file not found`]);
  });
});
