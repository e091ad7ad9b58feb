import { MclipError } from '../errors.js';
import type { HookHandle, Module } from '../base/nn/module.js';
import { RepMixerBlock } from '../base/layers/repmixer-block.js';
import type { TextTransformer } from '../base/model/text-transformer.js';
import { hookGroup } from './hook-group.js';
import { restoreGrid, startGrid } from './token-grid.js';

/**
 * What a conv block that follows reduced transformer layers sees (issue 12 item 4; methods.md §4.5, `mct`).
 * The `mct` text tower is RepMixer, four transformer layers, RepMixer; the RepMixer blocks mix each position
 * with its five neighbours on each side (11-tap depthwise convolutions over evenly spaced slots) and have no
 * attention map, so token reducers act only inside the transformer layers, and before the last RepMixer block:
 *
 * - `restore` (the default): the tokens are scattered back onto the grid the transformer run started with —
 *   a kept token to its slot, a merged token's state to every slot it stands for (ToMe's unmerge), a pruned
 *   slot the state it had when it was removed — and the text state is that of the grid again. The block sees
 *   the geometry it was trained on; it saves nothing in the block itself.
 * - `compact`: the block runs on the short sequence (kept tokens in original order, which the reducers keep):
 *   cheaper, but every receptive field now spans other tokens than in training.
 *
 * Why `restore` is the default: it is the faithful choice for a trained tower used without fine-tuning —
 * the block's taps see the neighbours they were trained with, and a pruned token is held at its state when it
 * was removed instead of vanishing from its neighbours' windows — while the transformer layers, most of the
 * `mct` text compute, run reduced under both policies. `compact` is the cheaper switch (`--conv-blocks
 * compact`). Measured on the shipped emoji model (docs/tokens.md; truncate + prune L1 0.5 + merge L2 r 8,
 * no fine-tune, 1,000 held-out samples): `compact` spends 16 % fewer text MACs on long captions (29.1 vs
 * 34.7 M) and scores within the noise of `restore` (R@1 5.9 / 6.6 vs 5.6 / 6.4 on short captions, 3.7 / 4.4
 * vs 3.7 / 4.3 on long ones; zero-shot top-1 14.9 vs 15.0). One small tower and one seed do not show that
 * moving every receptive field is harmless in general, so the default stays the geometry-preserving one;
 * `compact` is for a tower where it has been measured. Deviations on the micro tower:
 * test/prune/conv-blocks.test.ts. The inference shortcut (the last block's pointwise FFN on the EOT rows
 * only) stays on under both policies.
 */
export const CONV_BLOCK_POLICIES = ['restore', 'compact'] as const;
export type ConvBlockPolicy = (typeof CONV_BLOCK_POLICIES)[number];

export function isConvBlockPolicy(s: string): s is ConvBlockPolicy {
  return (CONV_BLOCK_POLICIES as readonly string[]).includes(s);
}

/** A policy name from user input; an MclipError naming the known policies otherwise. */
export function parseConvBlockPolicy(s: string): ConvBlockPolicy {
  if (!isConvBlockPolicy(s)) throw new MclipError(`unknown conv block policy '${s}' (known: ${CONV_BLOCK_POLICIES.join(', ')})`);
  return s;
}

/**
 * Installs `policy` on the text tower: for `restore`, every run of transformer layers followed by a RepMixer
 * block records the grid at its first layer's input (a pre-forward hook) and restores it after its last
 * layer (a forward hook). `compact` and towers without a conv block after a transformer layer install nothing.
 */
export function convBlockPolicy(tower: TextTransformer, policy: ConvBlockPolicy): HookHandle {
  if (policy === 'compact') return { remove: () => {} };
  const layers = tower.transformer.modules();
  const isConv = (m: Module | undefined) => m instanceof RepMixerBlock;
  const handles: HookHandle[] = [];
  let start = -1;
  layers.forEach((m, i) => {
    if (isConv(m)) return;
    if (start < 0 || isConv(layers[i - 1])) start = i;
    if (!isConv(layers[i + 1])) return;
    handles.push(
      layers[start].registerForwardPreHook((_m, x, ctx) => {
        if (ctx) startGrid(ctx, x.shape[0], x.shape[1] as number);
      }),
      m.registerForwardHook((_m, _x, y, ctx) => (ctx ? restoreGrid(ctx, y) : undefined)),
    );
  });
  return hookGroup(handles);
}
