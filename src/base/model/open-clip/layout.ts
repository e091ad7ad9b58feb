/**
 * Which key layout a checkpoint's state dict is in, from its keys alone: ours / ml-mobileclip's
 * (`image_encoder.*`, `text_encoder.*`: the same names), or open_clip's (`visual.*` with `text.*`, or CLIP's
 * top-level text keys `token_embedding`, `transformer.resblocks.*`, …). Anything else is a one-line error.
 */
import { MclipError } from '../../../errors.js';
import type { StateDict } from '../../io/tensor-data.js';
import type { TextPrefix } from './keys.js';

export type CheckpointLayout = { kind: 'mclip' } | { kind: 'open_clip'; textPrefix: TextPrefix };

function some(sd: StateDict, prefix: string): boolean {
  for (const k of sd.keys()) if (k.startsWith(prefix)) return true;
  return false;
}

/** The layout of `sd` (read from `source`, for the message). */
export function checkpointLayout(sd: StateDict, source: string): CheckpointLayout {
  if (some(sd, 'image_encoder.') || some(sd, 'text_encoder.')) return { kind: 'mclip' };
  if (some(sd, 'visual.')) {
    if (some(sd, 'text.')) return { kind: 'open_clip', textPrefix: 'text.' };
    if (sd.has('token_embedding.weight')) return { kind: 'open_clip', textPrefix: '' };
    throw new MclipError(`${source}: open_clip-style 'visual.*' keys but no text tower ('text.*' or 'token_embedding.weight')`);
  }
  const first = [...sd.keys()].slice(0, 3).map((k) => `'${k}'`);
  throw new MclipError(
    `${source}: unknown checkpoint layout (keys such as ${first.join(', ') || 'none'}): expected ours or ml-mobileclip's ('image_encoder.*', 'text_encoder.*') or open_clip's ('visual.*', 'text.*')`,
  );
}
