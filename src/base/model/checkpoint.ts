import { existsSync, readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { MclipError } from '../../errors.js';
import { loadTorchCheckpoint } from '../io/torch-checkpoint.js';
import { readSafetensors, writeSafetensors } from '../io/safetensors.js';
import type { StateDict } from '../io/tensor-data.js';
import { CLIP } from './clip.js';
import { getConfig, type ClipConfig } from './configs.js';
import { expectedShapes, exportStateDict, loadStateDict, stripPrefix } from './state-dict.js';
import { diffStateDict, type StateDictDiff } from '../io/state-dict-check.js';
import { reparameterize } from './reparameterize.js';
import { configFromStateDict } from './config-inference.js';
import { checkpointLayout, type CheckpointLayout } from './open-clip/layout.js';
import { adaptToOpenClip, configFromOpenClip } from './open-clip/config.js';
import { fromOpenClipStateDict } from './open-clip/state-dict.js';
import type { TextPrefix } from './open-clip/keys.js';
import type { SaveDType } from '../io/torch-writer.js';

export { configFromStateDict } from './config-inference.js';

/** Metadata keys of our own checkpoint format (safetensors + the JSON config in its header). */
export const META_FORMAT = 'mclip.format';
export const META_CONFIG = 'mclip.config';
export const META_FUSED = 'mclip.fused';
export const FORMAT_VERSION = 'mclip-checkpoint-v1';

export interface LoadModelOptions {
  /**
   * Architecture name: the file must fit it (a wrong one is a one-line error). Without it the architecture
   * is read off the tensor shapes (`configFromStateDict`), with the stored config for what shapes do not tell.
   */
  arch?: string;
  /** Reparameterise after loading (official inference path). */
  fused?: boolean;
}

export interface LoadedModel {
  model: CLIP;
  config: ClipConfig;
  /** The checkpoint itself was in fused (inference) form. */
  storedFused: boolean;
  source: string;
  /** The file's key layout: ours / ml-mobileclip's, or open_clip's (`saveOpenClip` writes it back). */
  layout: CheckpointLayout;
  /** The dtype of the file's floating tensors when they all share float32 or float16 (to save back bit-exactly). */
  floatDType: SaveDType | null;
}

/** Reads any supported checkpoint file into a state dict plus the config stored with it (if any). */
export async function readCheckpointFile(path: string): Promise<{ sd: StateDict; config: ClipConfig | null }> {
  if (!existsSync(path)) throw new MclipError(`${path}: checkpoint file not found`);
  const ext = extname(path).toLowerCase();
  if (ext === '.safetensors') {
    const { tensors, metadata } = readSafetensors(path);
    let config: ClipConfig | null = null;
    const raw = metadata[META_CONFIG];
    if (raw !== undefined) {
      try {
        config = JSON.parse(raw) as ClipConfig;
      } catch {
        throw new MclipError(`${path}: metadata '${META_CONFIG}' is not valid JSON`);
      }
    } else {
      const side = path.replace(/\.safetensors$/i, '.json');
      if (existsSync(side)) config = JSON.parse(readFileSync(side, 'utf8')) as ClipConfig;
    }
    return { sd: tensors, config };
  }
  if (ext === '.pt' || ext === '.pth' || ext === '.bin' || ext === '.ckpt') {
    return { sd: await loadTorchCheckpoint(path), config: null };
  }
  throw new MclipError(`${path}: unknown checkpoint extension '${ext}' (expected .pt, .pth or .safetensors)`);
}

/** True when the state dict holds the fused (reparameterised) structure. */
export function isFusedStateDict(sd: StateDict): boolean {
  for (const k of sd.keys()) if (/\.(reparam_conv|lkb_reparam)\./.test(k)) return true;
  return false;
}

/**
 * A named config (`--arch`) adjusted to the few shapes a named architecture leaves free: vocabulary size,
 * context length, text width and projection width. Everything else must then fit, or the load fails with
 * the wrong-`--arch` message.
 */
function adaptNamedConfig(base: ClipConfig, sd: StateDict, source: string): ClipConfig {
  const cfg = structuredClone(base);
  const emb = sd.get('text_encoder.embedding_layer.weight');
  if (!emb) throw new MclipError(`${source}: no 'text_encoder.embedding_layer.weight' — is this a MobileCLIP checkpoint?`);
  cfg.text.vocabSize = emb.shape[0];
  cfg.text.dim = emb.shape[1];
  const pos = sd.get('text_encoder.positional_embedding.pos_embed.pos_embed');
  if (pos && pos.shape.length === 4) cfg.text.contextLength = pos.shape[2];
  const proj = sd.get('text_encoder.projection_layer');
  if (proj && proj.shape.length === 2) cfg.embedDim = proj.shape[1];
  return cfg;
}

/** The one float dtype of `sd` when it is float32 or float16, else null. */
function floatDTypeOf(sd: StateDict): SaveDType | null {
  const seen = new Set<string>();
  for (const t of sd.values()) if (t.dtype === 'float32' || t.dtype === 'float16' || t.dtype === 'bfloat16' || t.dtype === 'float64') seen.add(t.dtype);
  const [only] = [...seen];
  return seen.size === 1 && (only === 'float32' || only === 'float16') ? only : null;
}

/** An open_clip-layout checkpoint: the architecture from its keys (or `--arch`), the weights renamed into ours. */
function loadOpenClip(sd: StateDict, textPrefix: TextPrefix, path: string, opts: LoadModelOptions): LoadedModel {
  const config = opts.arch ? adaptToOpenClip(getConfig(opts.arch), sd, textPrefix, path) : configFromOpenClip(sd, textPrefix, path);
  let storedFused = false;
  for (const k of sd.keys()) if (k.includes('.reparam_conv.')) storedFused = true;
  const model = new CLIP(config, { inferenceMode: storedFused });
  try {
    loadStateDict(model, fromOpenClipStateDict(model, config, sd, textPrefix, path), path);
  } catch (e) {
    model.dispose();
    throw e;
  }
  model.eval();
  if (opts.fused && !storedFused) reparameterize(model);
  return { model, config, storedFused, source: path, layout: { kind: 'open_clip', textPrefix }, floatDType: floatDTypeOf(sd) };
}

/** Builds a model from a checkpoint (ours, ml-mobileclip's or open_clip's; `.pt`/`.bin`/safetensors) and loads its weights. */
export async function loadModel(path: string, opts: LoadModelOptions = {}): Promise<LoadedModel> {
  const { sd: raw, config: stored } = await readCheckpointFile(path);
  const sd = stripPrefix(raw, 'module.');
  const layout = checkpointLayout(sd, path);
  if (layout.kind === 'open_clip') return loadOpenClip(sd, layout.textPrefix, path, opts);
  // --arch: the named architecture, checked against the file below. Otherwise every width and depth comes
  // from the tensor shapes, with the stored config (if any) for what shapes do not tell.
  const config = opts.arch ? adaptNamedConfig(getConfig(opts.arch), sd, path) : configFromStateDict(stored, sd, path);
  const storedFused = isFusedStateDict(sd);
  const model = new CLIP(config, { inferenceMode: storedFused });
  if (opts.arch) {
    const diff = diffStateDict(expectedShapes(model), sd);
    if (diff.missing.length + diff.unexpected.length + diff.misshaped.length > 0) {
      model.dispose();
      throw new MclipError(archMismatch(path, opts.arch, diff, stored?.name));
    }
  }
  try {
    loadStateDict(model, sd, path);
  } catch (e) {
    model.dispose();
    throw e;
  }
  model.eval();
  if (opts.fused && !storedFused) reparameterize(model);
  return { model, config, storedFused, source: path, layout, floatDType: floatDTypeOf(sd) };
}

/** A short message for a checkpoint that does not fit the `--arch` given: says so first, counts, one example. */
function archMismatch(path: string, arch: string, d: StateDictDiff, storedName: string | undefined): string {
  const counts = [
    d.missing.length ? `${d.missing.length} missing` : '',
    d.unexpected.length ? `${d.unexpected.length} unexpected` : '',
    d.misshaped.length ? `${d.misshaped.length} mis-shaped` : '',
  ].filter(Boolean);
  const m = d.misshaped[0];
  const example = m
    ? `${m.key}: ${arch} has [${m.expected.join(', ')}], the file [${m.got.join(', ')}]`
    : d.missing[0] !== undefined
      ? `${d.missing[0]} is missing`
      : `${d.unexpected[0]} is unexpected`;
  const hint = storedName && storedName !== arch ? `; the file says it is ${storedName}: drop --arch` : '; check --arch';
  return `wrong --arch? ${path} does not fit ${arch}: ${counts.join(', ')} keys (e.g. ${example})${hint}`;
}

/** Saves a model in our format: safetensors (official key names and layouts) + JSON config. */
export function saveModel(model: CLIP, path: string, extraMetadata: Record<string, string> = {}): void {
  const sd = exportStateDict(model);
  const fused = isFusedStateDict(sd);
  writeSafetensors(path, sd, {
    ...extraMetadata,
    [META_FORMAT]: FORMAT_VERSION,
    [META_CONFIG]: JSON.stringify(model.cfg),
    [META_FUSED]: String(fused),
  });
}
