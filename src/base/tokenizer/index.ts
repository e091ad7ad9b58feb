export { ClipTokenizer, DEFAULT_CONTEXT_LENGTH, type DecodeOptions } from './clip-tokenizer.js';
export { cleanLower, basicClean, whitespaceClean } from './clean.js';
export { fixText } from './ftfy.js';
export { htmlUnescape } from './html-unescape.js';
export { resolveVocabDir, VOCAB_ENV } from './vocab-location.js';
export {
  MERGES_FILE,
  VOCAB_FILE,
  readVocabFiles,
  writeVocabFiles,
  vocabFilesIn,
  type VocabData,
  type VocabFiles,
} from './vocab-files.js';
export { trainVocab, writeVocab, MIN_VOCAB_SIZE, type TrainedVocab } from './vocab-train.js';
