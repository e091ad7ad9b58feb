/**
 * The text-token reduction flags shared by `mclip eval` and the recipes' `tokens` stage: the padding
 * policy (src/prune/padding.ts), attention-informed pruning (src/prune/attention-prune.ts) and ToMe
 * merging (src/merge/tome.ts), and their installation on a model's text tower.
 */
import type { HookHandle } from '../base/nn/module.js';
import type { CLIP } from '../base/model/clip.js';
import { applyTextPadding, TEXT_PADDINGS, type TextPadding } from '../prune/padding.js';
import { applyTokenReduction } from '../prune/reduction.js';
import { CONV_BLOCK_POLICIES, isConvBlockPolicy, type ConvBlockPolicy } from '../prune/conv-blocks.js';
import { hookGroup } from '../prune/hook-group.js';
import { textLayers } from '../base/model/configs.js';
import type { OptionTable } from './options.js';
import { UsageError } from './usage.js';

export const TOKEN_OPTIONS = {
  'text-padding': {
    type: 'string',
    choices: TEXT_PADDINGS,
    describe: 'text padding policy (as-trained: the model as trained; truncate: exact for causal towers; see src/prune/padding.ts)',
  },
  'prune-layers': { type: 'string', describe: 'text layers (0-based, comma-separated) after whose attention tokens are pruned by end-of-text attention' },
  keep: { type: 'number', describe: 'with --prune-layers: fraction of the present tokens each pruning layer keeps, in (0, 1]' },
  'merge-layers': { type: 'string', describe: 'text layers (0-based, comma-separated) after whose attention ToMe merges token pairs' },
  merge: { type: 'number', describe: 'with --merge-layers: token pairs merged in each merging layer (r)' },
  'conv-blocks': {
    type: 'string',
    choices: CONV_BLOCK_POLICIES,
    describe: "with pruning or merging in an mct tower: what its last RepMixer block sees (restore: the full grid again, the default; compact: the short sequence; see src/prune/conv-blocks.ts)",
  },
} as const satisfies OptionTable;

/** What TOKEN_OPTIONS parse into. */
export interface TokenSettings {
  padding: TextPadding;
  prune: { layer: number; keep: number }[];
  merge: { layer: number; merge: number }[];
  /** Before a RepMixer block that follows reduced layers (`mct`). */
  convBlocks: ConvBlockPolicy;
}

export interface TokenArgs {
  textPadding?: string;
  pruneLayers?: string;
  keep?: number;
  mergeLayers?: string;
  merge?: number;
  convBlocks?: string;
}

function layerList(flag: string, s: string, layers: number): number[] {
  const out = s.split(',').map((p) => p.trim()).filter(Boolean).map((p) => Number(p));
  for (const l of out) if (!Number.isInteger(l) || l < 0 || l >= layers) throw new UsageError(`--${flag}: expected layer indices in 0..${layers - 1}, got '${s}'`);
  if (new Set(out).size !== out.length) throw new UsageError(`--${flag}: a layer is named twice in '${s}'`);
  return out;
}

/** Checks and parses the token flags against a model with LAYERS text transformer layers. */
export function parseTokenArgs(a: TokenArgs, layers: number): TokenSettings {
  const padding = (a.textPadding ?? 'as-trained') as TextPadding;
  if (!(TEXT_PADDINGS as readonly string[]).includes(padding)) throw new UsageError(`--text-padding: unknown policy '${a.textPadding}' (choices: ${TEXT_PADDINGS.join(', ')})`);
  if ((a.pruneLayers === undefined) !== (a.keep === undefined)) throw new UsageError('--prune-layers and --keep go together');
  if ((a.mergeLayers === undefined) !== (a.merge === undefined)) throw new UsageError('--merge-layers and --merge go together');
  const prune: TokenSettings['prune'] = [];
  if (a.pruneLayers !== undefined && a.keep !== undefined) {
    if (!(a.keep > 0 && a.keep <= 1)) throw new UsageError(`--keep: expected a fraction in (0, 1], got ${a.keep}`);
    for (const layer of layerList('prune-layers', a.pruneLayers, layers)) prune.push({ layer, keep: a.keep });
  }
  const merge: TokenSettings['merge'] = [];
  if (a.mergeLayers !== undefined && a.merge !== undefined) {
    if (!(Number.isInteger(a.merge) && a.merge >= 0)) throw new UsageError(`--merge: expected a whole number of token pairs ≥ 0, got ${a.merge}`);
    for (const layer of layerList('merge-layers', a.mergeLayers, layers)) merge.push({ layer, merge: a.merge });
  }
  const convBlocks = a.convBlocks ?? 'restore';
  if (!isConvBlockPolicy(convBlocks)) throw new UsageError(`--conv-blocks: unknown policy '${a.convBlocks}' (choices: ${CONV_BLOCK_POLICIES.join(', ')})`);
  if (a.convBlocks !== undefined && prune.length === 0 && merge.length === 0) throw new UsageError('--conv-blocks goes with --prune-layers or --merge-layers');
  return { padding, prune, merge, convBlocks };
}

/** True when the settings change nothing (the model runs as trained). */
export function tokensAsTrained(s: TokenSettings): boolean {
  return s.padding === 'as-trained' && s.prune.every((p) => p.keep >= 1) && s.merge.every((m) => m.merge === 0);
}

/** The number of layers of a model's text tower (RepMixer blocks included: the reducers' layer indices count them). */
export function textLayerCount(model: CLIP): number {
  return textLayers(model.cfg.text).length;
}

/** Installs the settings on the model's text tower; `remove()` restores it. */
export function installTokenSettings(model: CLIP, s: TokenSettings): HookHandle {
  const handles: HookHandle[] = [];
  try {
    handles.push(applyTextPadding(model.textEncoder, s.padding));
    if (s.prune.length || s.merge.length) handles.push(applyTokenReduction(model.textEncoder, { prune: s.prune, merge: s.merge, convBlocks: s.convBlocks }));
  } catch (e) {
    handles.forEach((h) => h.remove());
    throw e;
  }
  return hookGroup(handles);
}

/** The flags that reproduce SETTINGS (empty when as trained). */
export function tokenFlags(s: TokenSettings): string[] {
  const out: string[] = [];
  if (s.padding !== 'as-trained') out.push('--text-padding', s.padding);
  if (s.prune.length) out.push('--prune-layers', s.prune.map((p) => p.layer).join(','), '--keep', String(s.prune[0]!.keep));
  if (s.merge.length) out.push('--merge-layers', s.merge.map((m) => m.layer).join(','), '--merge', String(s.merge[0]!.merge));
  if (s.convBlocks !== 'restore' && (s.prune.length || s.merge.length)) out.push('--conv-blocks', s.convBlocks);
  return out;
}
