import type { Argv } from 'yargs';
import { ClipTokenizer, resolveVocabDir } from '../../base/tokenizer/index.js';
import { MclipError } from '../../errors.js';

export interface TokenizeArgs {
  texts?: string[];
  '--'?: Array<string | number>;
  vocab?: string;
  json?: boolean;
  contextLength: number;
}

export function tokenizeCommand(y: Argv): Argv {
  return y.command<TokenizeArgs>(
    'tokenize [texts..]',
    'CLIP BPE token ids (SOT … EOT, zero padded) of each text',
    (a) =>
      a
        .positional('texts', { type: 'string', array: true, describe: 'texts to tokenize (put texts starting with "-" after --)' })
        .parserConfiguration({ 'populate--': true })
        .option('vocab', { type: 'string', describe: 'folder with clip-merges.txt and clip-vocab.json (else $MCLIP_VOCAB)' })
        .option('json', { type: 'boolean', default: false, describe: 'print JSON' })
        .option('context-length', { type: 'number', default: 77, describe: 'ids per row' }) as unknown as Argv<TokenizeArgs>,
    (args) => {
      if (!Number.isInteger(args.contextLength) || args.contextLength < 2) throw new MclipError(`--context-length must be an integer ≥ 2, got ${args.contextLength}`);
      const texts = [...(args.texts ?? []), ...(args['--'] ?? []).map(String)];
      if (texts.length === 0) throw new MclipError('give at least one text to tokenize');
      const tok = ClipTokenizer.fromDir(resolveVocabDir(args.vocab));
      const ids = tok.tokenize(texts, args.contextLength);
      const rows: number[][] = [];
      for (let i = 0; i < texts.length; i++) rows.push(Array.from(ids.subarray(i * args.contextLength, (i + 1) * args.contextLength)));
      if (args.json) {
        console.log(JSON.stringify(texts.map((text, i) => ({ text, ids: rows[i] }))));
      } else {
        texts.forEach((t, i) => console.log(`${JSON.stringify(t)}\t${rows[i].join(' ')}`));
      }
    },
  );
}
