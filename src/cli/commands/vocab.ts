import { readFileSync, existsSync } from 'node:fs';
import type { Argv } from 'yargs';
import { trainVocab, writeVocab, MIN_VOCAB_SIZE } from '../../base/tokenizer/index.js';
import { MclipError } from '../../errors.js';

export interface VocabTrainArgs {
  texts: string;
  size: number;
  out: string;
}

/** Reads a caption corpus: one caption per line (.txt) or a JSON array of strings. */
export function readCorpus(path: string): string[] {
  if (!existsSync(path)) throw new MclipError(`${path}: caption file not found`);
  const raw = readFileSync(path, 'utf8');
  if (path.endsWith('.json')) {
    let v: unknown;
    try {
      v = JSON.parse(raw);
    } catch {
      throw new MclipError(`${path}: not valid JSON (expected an array of strings)`);
    }
    if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) throw new MclipError(`${path}: expected a JSON array of strings`);
    return v as string[];
  }
  return raw.split(/\r?\n/).filter((l) => l.trim().length > 0);
}

export function vocabCommand(y: Argv): Argv {
  return y.command('vocab', 'build CLIP-format BPE vocabularies', (v) =>
    v
      .command<VocabTrainArgs>(
        'train',
        'train a byte-level BPE vocab (CLIP format: merges + vocab JSON) from a caption corpus',
        (a) =>
          a
            .option('texts', { type: 'string', demandOption: true, describe: 'captions: one per line, or a JSON array' })
            .option('size', { type: 'number', demandOption: true, describe: `vocabulary size (≥ ${MIN_VOCAB_SIZE}, incl. the 2 special tokens)` })
            .option('out', { type: 'string', demandOption: true, describe: 'output folder' }) as unknown as Argv<VocabTrainArgs>,
        (args) => {
          if (!Number.isInteger(args.size) || args.size < MIN_VOCAB_SIZE) throw new MclipError(`--size must be an integer ≥ ${MIN_VOCAB_SIZE}, got ${args.size}`);
          const texts = readCorpus(args.texts);
          if (texts.length === 0) throw new MclipError(`${args.texts}: no captions`);
          const t0 = Date.now();
          const result = trainVocab(texts, args.size);
          const files = writeVocab(args.out, result);
          const n = Object.keys(result.vocab).length;
          console.error(`mclip: vocab of ${n} tokens (${result.merges.length} merges) from ${texts.length} captions in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
          console.log(JSON.stringify({ merges: files.merges, vocab: files.vocab, size: n }));
        },
      )
      .demandCommand(1, 'name a vocab subcommand (train)'),
  );
}
