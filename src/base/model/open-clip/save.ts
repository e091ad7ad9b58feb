/**
 * Writes a model in open_clip's layout — a safetensors file (`.safetensors`, with open_clip's `format: pt`
 * metadata) or a torch checkpoint (`.pt`, `.pth`, `.bin`) that open_clip's `create_model(…, pretrained=FILE)`
 * loads. A model loaded from such a file and saved with the file's float dtype gives back every tensor
 * bit-exactly.
 */
import { extname } from 'node:path';
import { MclipError } from '../../../errors.js';
import { writeSafetensors } from '../../io/safetensors.js';
import { castFloat, writeTorchCheckpoint, type SaveDType } from '../../io/torch-writer.js';
import type { StateDict } from '../../io/tensor-data.js';
import type { CLIP } from '../clip.js';
import { toOpenClipStateDict } from './state-dict.js';
import type { TextPrefix } from './keys.js';

export interface SaveOpenClipOptions {
  /** Float dtype of the tensors written (default float32; counters stay int64). */
  dtype?: SaveDType;
  /** Where the text tower goes: `text.` (CustomTextCLIP, MobileCLIP's configs; the default) or the top level. */
  textPrefix?: TextPrefix;
}

/** The model as an open_clip state dict in `dtype`. */
export function openClipStateDict(model: CLIP, opts: SaveOpenClipOptions = {}, what = 'open_clip export'): StateDict {
  const sd = toOpenClipStateDict(model, model.cfg, opts.textPrefix ?? 'text.', what);
  if (opts.dtype === undefined || opts.dtype === 'float32') return sd;
  const out: StateDict = new Map();
  for (const [k, t] of sd) out.set(k, castFloat(t, opts.dtype));
  return out;
}

/** Saves `model` at `path` in open_clip's layout (the format from the extension). */
export function saveOpenClip(model: CLIP, path: string, opts: SaveOpenClipOptions = {}): void {
  const sd = openClipStateDict(model, opts, path);
  const ext = extname(path).toLowerCase();
  if (ext === '.safetensors') writeSafetensors(path, sd, { format: 'pt' });
  else if (ext === '.pt' || ext === '.pth' || ext === '.bin') writeTorchCheckpoint(path, sd);
  else throw new MclipError(`${path}: unknown extension '${ext}' for an open_clip checkpoint (expected .safetensors, .pt, .pth or .bin)`);
}
