import type { HookHandle } from '../base/nn/module.js';
import type { TextTransformer } from '../base/model/text-transformer.js';
import { tokenMerging, type MergeLayer } from '../merge/tome.js';
import { attentionPruning, type AttentionPruneOptions, type PruneLayer } from './attention-prune.js';
import { convBlockPolicy, type ConvBlockPolicy } from './conv-blocks.js';
import { hookGroup } from './hook-group.js';

export interface TokenReductionOptions {
  /** Pruning reducers (attention-informed, `attention-prune.ts`). */
  prune?: readonly PruneLayer[];
  /** Merging reducers (ToMe, `merge/tome.ts`). */
  merge?: readonly MergeLayer[];
  accumulate?: AttentionPruneOptions['accumulate'];
  padsFirst?: AttentionPruneOptions['padsFirst'];
  implementation?: AttentionPruneOptions['implementation'];
  /** Before a RepMixer block that follows reduced transformer layers (`mct`): restore the grid (default) or compact. */
  convBlocks?: ConvBlockPolicy;
}

/**
 * Token reduction in the text tower: pruning and merging reducers plus the conv-block policy, installed
 * once. In a layer with both, pruning runs first, then merging on the kept tokens (PuMer's order). All
 * reducers act at the layer's `after_attention` site. `remove()` restores the plain tower.
 */
export function applyTokenReduction(tower: TextTransformer, opts: TokenReductionOptions): HookHandle {
  const handles: HookHandle[] = [];
  const active = (opts.prune ?? []).some((l) => l.keep < 1) || (opts.merge ?? []).some((l) => l.merge > 0);
  try {
    // Nothing reduced (keep 1, merge 0): nothing installed, so the tower stays bit-identical.
    if (active) handles.push(convBlockPolicy(tower, opts.convBlocks ?? 'restore'));
    if (opts.prune?.length) handles.push(attentionPruning(tower, { layers: opts.prune, accumulate: opts.accumulate, padsFirst: opts.padsFirst, implementation: opts.implementation }));
    if (opts.merge?.length) handles.push(tokenMerging(tower, { layers: opts.merge }));
  } catch (e) {
    handles.forEach((h) => h.remove());
    throw e;
  }
  return hookGroup(handles);
}
