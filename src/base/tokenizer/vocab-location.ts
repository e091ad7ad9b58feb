/**
 * Where the CLIP vocabulary lives. We cannot ship OpenAI's BPE files, so the user points at a directory
 * holding `clip-merges.txt` and `clip-vocab.json`: `--vocab DIR`, else the MCLIP_VOCAB environment variable.
 */
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';

import { MclipError } from '../../errors.js';
import { MERGES_FILE, VOCAB_FILE, vocabFilesIn } from './vocab-files.js';

export const VOCAB_ENV = 'MCLIP_VOCAB';

/** The vocabulary directory: `flag` if given, else $MCLIP_VOCAB; checked to hold both files. */
export function resolveVocabDir(flag?: string): string {
  const fromEnv = process.env[VOCAB_ENV];
  const raw = flag !== undefined && flag !== '' ? flag : fromEnv !== undefined && fromEnv !== '' ? fromEnv : undefined;
  if (raw === undefined) {
    throw new MclipError(
      `no CLIP vocabulary given: pass --vocab DIR or set ${VOCAB_ENV}=DIR, where DIR holds ${MERGES_FILE} and ${VOCAB_FILE} ` +
        `(e.g. from apple/ml-mobileclip ios_app/MobileCLIPExplore/Resources, or made with mclip's vocabulary training)`,
    );
  }
  const source = raw === flag ? '--vocab' : VOCAB_ENV;
  const dir = resolve(raw);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new MclipError(`${source} ${dir}: not a directory (expected one holding ${MERGES_FILE} and ${VOCAB_FILE})`);
  }
  const files = vocabFilesIn(dir);
  for (const f of [files.merges, files.vocab]) {
    if (!existsSync(f)) throw new MclipError(`${source} ${dir}: missing ${f}`);
  }
  return dir;
}
