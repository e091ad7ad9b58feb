import { readFileSync, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { readImageTextDataset } from '../../base/data/index.js';
import type { Argv } from 'yargs';
import { trainVocab, writeVocab, MIN_VOCAB_SIZE } from '../../base/tokenizer/index.js';
import { MclipError } from '../../errors.js';

export interface VocabTrainArgs {
  texts: string;
  split: string;
  size: number;
  out: string;
}

/** The captions of a dataset split (each sample's real caption and its alternative captions), in shard order. */
async function datasetCaptions(dir: string, split: string): Promise<string[]> {
  if (!existsSync(join(dir, split))) throw new MclipError(`${dir}: no '${split}' split folder (a dataset from 'mclip data …', or give a caption file)`);
  const out: string[] = [];
  for await (const s of readImageTextDataset(dir, split)) out.push(s.caption, ...s.captions);
  return out;
}

/** Reads a caption corpus: a dataset folder (its split's captions), one caption per line (.txt) or a JSON array of strings. */
export async function readCorpus(path: string, split = 'train'): Promise<string[]> {
  if (!existsSync(path)) throw new MclipError(`${path}: caption file not found`);
  if (statSync(path).isDirectory()) return datasetCaptions(path, split);
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
            .option('texts', { type: 'string', demandOption: true, describe: "captions: a dataset folder from 'mclip data …' (its --split's captions), a .txt file with one per line, or a .json array" })
            .option('split', { type: 'string', default: 'train', describe: 'split of a dataset folder given as --texts' })
            .option('size', { type: 'number', demandOption: true, describe: `vocabulary size (≥ ${MIN_VOCAB_SIZE}, incl. the 2 special tokens)` })
            .option('out', { type: 'string', demandOption: true, describe: 'output folder' }) as unknown as Argv<VocabTrainArgs>,
        async (args) => {
          if (!Number.isInteger(args.size) || args.size < MIN_VOCAB_SIZE) throw new MclipError(`--size must be an integer ≥ ${MIN_VOCAB_SIZE}, got ${args.size}`);
          const texts = await readCorpus(args.texts, args.split);
          if (texts.length === 0) throw new MclipError(`${args.texts}: no captions`);
          const t0 = Date.now();
          const result = trainVocab(texts, args.size);
          const files = writeVocab(args.out, result);
          const n = Object.keys(result.vocab).length;
          if (n < args.size) {
            console.error(`mclip: warning: --size ${args.size} asked, but these captions yield only ${n} tokens (256 byte tokens, their end-of-word forms, ${result.merges.length} merges and the 2 special tokens): the vocabulary has ${n} ids, not ${args.size}`);
          }
          console.error(`mclip: vocab of ${n} tokens (${result.merges.length} merges) from ${texts.length} captions in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
          console.log(JSON.stringify({ merges: files.merges, vocab: files.vocab, size: n }));
        },
      )
      .demandCommand(1, 'name a vocab subcommand (train)'),
  );
}
