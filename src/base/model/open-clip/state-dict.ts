/**
 * open_clip-layout state dicts ↔ ours, for a given model: every key renamed by `openClipKeyMap`, the two tensors
 * whose layout differs converted bit-exactly, dtypes untouched (a float16 file stays float16 until loading).
 */
import { MclipError } from '../../../errors.js';
import type { StateDict } from '../../io/tensor-data.js';
import { MAX_LISTED } from '../../io/state-dict-check.js';
import type { Module } from '../../nn/module.js';
import type { ClipConfig } from '../configs.js';
import { expectedShapes, exportStateDict } from '../state-dict.js';
import { convertTensor, openClipKeyMap, theirShape, type TextPrefix } from './keys.js';

function listed(keys: string[]): string {
  const shown = keys.slice(0, MAX_LISTED).join(', ');
  return keys.length > MAX_LISTED ? `${shown}, ... (${keys.length - MAX_LISTED} more)` : shown;
}

/**
 * `sd` (open_clip's names) as our state dict for `model` (built from `cfg`). A missing, unexpected or
 * mis-shaped key is a one-line error in open_clip's names.
 */
export function fromOpenClipStateDict(model: Module, cfg: ClipConfig, sd: StateDict, textPrefix: TextPrefix, source: string): StateDict {
  const shapes = expectedShapes(model);
  const map = openClipKeyMap(cfg, shapes.keys(), textPrefix, source);
  const out: StateDict = new Map();
  const used = new Set<string>();
  const missing: string[] = [];
  const misshaped: string[] = [];
  for (const [ours, rule] of map) {
    const t = sd.get(rule.key);
    if (!t) {
      missing.push(rule.key);
      continue;
    }
    used.add(rule.key);
    const want = theirShape(shapes.get(ours) ?? [], rule.transform);
    if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i])) {
      misshaped.push(`${rule.key}: expected [${want.join(', ')}], got [${t.shape.join(', ')}]`);
      continue;
    }
    out.set(ours, convertTensor(t, rule.transform, shapes.get(ours) ?? []));
  }
  const unexpected = [...sd.keys()].filter((k) => !used.has(k));
  const parts: string[] = [];
  if (missing.length) parts.push(`${missing.length} missing (${listed(missing)})`);
  if (unexpected.length) parts.push(`${unexpected.length} unexpected (${listed(unexpected)})`);
  if (misshaped.length) parts.push(`${misshaped.length} mis-shaped (${misshaped.slice(0, MAX_LISTED).join('; ')})`);
  if (parts.length) throw new MclipError(`${source}: open_clip checkpoint does not fit ${cfg.name}: ${parts.join('; ')}`);
  return out;
}

/** The model's parameters and buffers under open_clip's names (float32, counters int64), in our order. */
export function toOpenClipStateDict(model: Module, cfg: ClipConfig, textPrefix: TextPrefix, what: string): StateDict {
  const ours = exportStateDict(model);
  const map = openClipKeyMap(cfg, ours.keys(), textPrefix, what);
  const out: StateDict = new Map();
  for (const [k, t] of ours) {
    const rule = map.get(k);
    if (!rule) throw new Error(`internal: no open_clip key for '${k}'`);
    out.set(rule.key, convertTensor(t, rule.transform, theirShape(t.shape, rule.transform)));
  }
  return out;
}
