import { MclipError } from '../errors.js';
import type { HookHandle } from '../base/nn/module.js';
import type { TextTransformer } from '../base/model/text-transformer.js';
import { truncatePadding } from './truncate.js';
import { mergePadsPadding } from './merge-pads.js';

/**
 * Padding policies of the text tower (methods.md §4.5; issue 12 item 1). A MobileCLIP caption is a few real
 * tokens in a 77-slot row, the rest padded with id 0, and the official towers run every slot.
 *
 * - `as-trained` (default): every slot runs, as officially; installs nothing (bit-identical).
 * - `truncate`: each batch cut to its longest real sequence (SOT…EOT) plus `spare` pads (`truncate.ts`).
 *   Exact for causal towers, approximate for the non-causal `mct` / S0–S2 towers.
 * - `pads-first`: a rule for token reducers — they drop pads before content (`padsFirstScores` in
 *   `pad-tokens.ts`). With no reducer in the tower the forward is the `as-trained` one.
 * - `merge-pads`: in the transformer layers each row's pads are one token of size n_pad under proportional
 *   attention (`merge-pads.ts`). Exact for causal towers and for identical pad states, approximate otherwise.
 */
export const TEXT_PADDINGS = ['as-trained', 'truncate', 'pads-first', 'merge-pads'] as const;
export type TextPadding = (typeof TEXT_PADDINGS)[number];

export interface TextPaddingOptions {
  policy: TextPadding;
  /** `truncate` only: pads kept after the longest caption's EOT (default 0). */
  spare?: number;
}

export function isTextPadding(s: string): s is TextPadding {
  return (TEXT_PADDINGS as readonly string[]).includes(s);
}

/** A policy name from user input; an MclipError naming the known policies otherwise. */
export function parseTextPadding(s: string): TextPadding {
  if (!isTextPadding(s)) throw new MclipError(`unknown text padding policy '${s}' (known: ${TEXT_PADDINGS.join(', ')})`);
  return s;
}

/**
 * Applies a padding policy to a text tower through forward hooks; `remove()` on the handle restores the
 * plain tower. Policies that change nothing in the forward (`as-trained`, `pads-first`) install no hook.
 */
export function applyTextPadding(tower: TextTransformer, opts: TextPaddingOptions | TextPadding): HookHandle {
  const o: TextPaddingOptions = typeof opts === 'string' ? { policy: opts } : opts;
  if (o.spare !== undefined && o.policy !== 'truncate') throw new MclipError(`spare pads apply to the 'truncate' padding policy only, not '${o.policy}'`);
  switch (o.policy) {
    case 'as-trained':
    case 'pads-first':
      return { remove: () => {} };
    case 'truncate':
      return truncatePadding(tower, { spare: o.spare });
    case 'merge-pads':
      return mergePadsPadding(tower);
  }
}
