import type { Argv } from 'yargs';
import { withOptions, type OptionTable } from '../options.js';
import { statSync } from 'node:fs';
import { basename, extname } from 'node:path';
import { MclipError } from '../../errors.js';
import { writeSafetensors } from '../../base/io/safetensors.js';
import { isFloatDType, type DType, type StateDict } from '../../base/io/tensor-data.js';
import { SAVE_DTYPES, castFloat, writeTorchCheckpoint, type SaveDType } from '../../base/io/torch-writer.js';
import { FORMAT_VERSION, META_CONFIG, META_FORMAT, META_FUSED, isFusedStateDict, readCheckpointFile } from '../../base/model/checkpoint.js';
import { stripPrefix } from '../../base/model/state-dict.js';
import { startBackend, type GlobalArgs } from '../run.js';
import { loadModel } from '../../base/model/checkpoint.js';
import { saveOpenClip } from '../../base/model/open-clip/save.js';
import { UsageError } from '../usage.js';
import { runConvertAttention, SWITCH_KERNELS } from './convert-attention.js';

export const CONVERT_TARGETS = ['pt', 'safetensors', 'open_clip'] as const;
type Target = (typeof CONVERT_TARGETS)[number];

/** File extensions each target writes (the first is the one error messages name). */
const EXTENSIONS: Readonly<Record<Target, readonly string[]>> = { pt: ['.pt', '.pth'], safetensors: ['.safetensors'], open_clip: ['.safetensors', '.bin', '.pt', '.pth'] };

export interface ConvertArgs extends GlobalArgs {
  checkpoint: string;
  /** Target format; may be left out with `attention` (safetensors). */
  to?: string;
  out: string;
  dtype?: string;
  /** Switch the model's attention kernel (`convert-attention.ts`) instead of rewriting the state dict. */
  attention?: string;
  arch?: string;
  qkNorm?: boolean;
  hybridNorm?: boolean;
  layerScale?: number;
  towers?: string;
}

function isTarget(s: string): s is Target {
  return (CONVERT_TARGETS as readonly string[]).includes(s);
}

function isSaveDType(s: string): s is SaveDType {
  return (SAVE_DTYPES as readonly string[]).includes(s);
}

/** "893 tensors: float16 771, int64 122" (the dtypes written). */
function dtypeCounts(sd: StateDict, dtype: SaveDType | undefined): string {
  const n = new Map<DType, number>();
  for (const t of sd.values()) {
    const d = dtype !== undefined && isFloatDType(t.dtype) ? dtype : t.dtype;
    n.set(d, (n.get(d) ?? 0) + 1);
  }
  return `${sd.size} tensors: ${[...n].map(([d, k]) => `${d} ${k}`).join(', ')}`;
}

/**
 * Converts a checkpoint at the state-dict level (with `--attention`, switches the model's attention kernel
 * instead: `convert-attention.ts`): keys (a DDP `module.` prefix dropped), fused or unfused
 * structure and dtypes are kept as they are, unless `--dtype` casts every floating tensor.
 */
export async function runConvert(args: ConvertArgs): Promise<void> {
  if (args.attention !== undefined) {
    if (args.to !== undefined && args.to !== 'safetensors') throw new UsageError(`--attention writes safetensors; --to must be safetensors or left out, got '${args.to}'`);
    if (args.dtype !== undefined) throw new UsageError('--attention keeps float32; --dtype is for state-dict conversion');
    return runConvertAttention({ ...args, attention: args.attention });
  }
  for (const [flag, v] of [['--qk-norm', args.qkNorm], ['--hybrid-norm', args.hybridNorm], ['--layer-scale', args.layerScale], ['--towers', args.towers], ['--arch', args.arch]] as const) {
    if (v !== undefined && v !== false) throw new UsageError(`${flag} needs --attention`);
  }
  if (args.to === undefined) throw new UsageError(`--to is required (${CONVERT_TARGETS.join(' | ')}) unless --attention is given`);
  if (!isTarget(args.to)) throw new UsageError(`--to must be one of ${CONVERT_TARGETS.join(', ')}, got '${args.to}'`);
  const target = args.to;
  const exts = EXTENSIONS[target];
  if (!exts.includes(extname(args.out).toLowerCase())) {
    throw new UsageError(`--to ${target}: --out must name a ${exts.join(' or ')} file, got '${args.out}'`);
  }
  let dtype: SaveDType | undefined;
  if (args.dtype !== undefined) {
    if (!isSaveDType(args.dtype)) throw new UsageError(`--dtype must be one of ${SAVE_DTYPES.join(', ')}, got '${args.dtype}'`);
    dtype = args.dtype;
  }
  if (target === 'open_clip') return convertToOpenClip(args, dtype);
  const { sd: raw, config } = await readCheckpointFile(args.checkpoint);
  const sd = stripPrefix(raw, 'module.');
  if (sd.size === 0) throw new MclipError(`${args.checkpoint}: the checkpoint holds no tensors`);
  const fused = isFusedStateDict(sd);
  if (target === 'pt') {
    writeTorchCheckpoint(args.out, sd, { dtype });
  } else {
    const meta: Record<string, string> = { 'mclip.converted_from': basename(args.checkpoint), [META_FUSED]: String(fused) };
    if (config) {
      meta[META_FORMAT] = FORMAT_VERSION;
      meta[META_CONFIG] = JSON.stringify(config);
    }
    writeSafetensors(args.out, new Map([...sd].map(([k, t]) => [k, castFloat(t, dtype)] as const)), meta);
  }
  console.log(`${args.out}: ${dtypeCounts(sd, dtype)}`);
  if (!args.quiet) {
    const mb = (statSync(args.out).size / 2 ** 20).toFixed(1);
    const what = target === 'pt' ? 'PyTorch state dict for torch.load + load_state_dict' : 'safetensors';
    console.error(`mclip: wrote ${args.out} (${what}; ${fused ? 'fused' : 'unfused'}; ${mb} MiB)`);
  }
}

/**
 * `--to open_clip`: the model (any layout we read) written in open_clip's layout — timm trunk under
 * `visual.trunk.*`, open_clip's text tower under `text.` (where the file had it, for an open_clip source) — in
 * `--dtype`, else the source's float dtype: an open_clip file comes back tensor for tensor.
 */
async function convertToOpenClip(args: ConvertArgs, dtype: SaveDType | undefined): Promise<void> {
  await startBackend(args);
  const loaded = await loadModel(args.checkpoint);
  try {
    const textPrefix = loaded.layout.kind === 'open_clip' ? loaded.layout.textPrefix : 'text.';
    saveOpenClip(loaded.model, args.out, { dtype: dtype ?? loaded.floatDType ?? undefined, textPrefix });
  } finally {
    loaded.model.dispose();
  }
  if (!args.quiet) {
    const mb = (statSync(args.out).size / 2 ** 20).toFixed(1);
    console.error(`mclip: wrote ${args.out} (open_clip layout, ${loaded.config.name}; ${loaded.storedFused ? 'fused' : 'unfused'}; ${mb} MiB)`);
  }
}

export const CONVERT_OPTIONS = {
  to: { type: 'string', describe: `target format: ${CONVERT_TARGETS.join(' | ')} (required unless --attention)` },
  out: { type: 'string', demandOption: true, describe: 'output file (.pt/.pth for --to pt, .safetensors for --to safetensors, either or .bin for --to open_clip)' },
  dtype: { type: 'string', describe: `cast every floating tensor: ${SAVE_DTYPES.join(' | ')} (default: keep; int64 stays int64)` },
  attention: { type: 'string', describe: `switch every attention layer to this kernel (${SWITCH_KERNELS.join(' | ')}; b = −ln n recorded); writes safetensors` },
  'qk-norm': { type: 'boolean', describe: 'with --attention: add QK-norm (LayerNorm on each head\'s q and k) to the text / ViT layers' },
  'hybrid-norm': { type: 'boolean', describe: 'with --attention: add a LayerNorm on the attention output before the residual add (text / ViT layers)' },
  'layer-scale': { type: 'number', describe: 'with --attention: LayerScale on the attention residual of the text / ViT layers, with this initial gain (e.g. 1e-4)' },
  towers: { type: 'string', describe: 'with --attention: text | image | both (default both)' },
  arch: { type: 'string', describe: 'with --attention: the architecture the checkpoint must fit (default: read off the shapes)' },
} as const satisfies OptionTable;

export function convertCommand(y: Argv): Argv {
  return y.command(
    'convert <checkpoint>',
    "rewrite a checkpoint as a PyTorch .pt (official keys; torch.load + load_state_dict take it), as safetensors, or in open_clip's layout (--to open_clip); or switch its attention (--attention sigmoid)",
    (a) =>
      withOptions(a.positional('checkpoint', { type: 'string', demandOption: true, describe: 'official .pt, safetensors, or an mclip checkpoint' }), CONVERT_OPTIONS),
    (args) =>
      runConvert({
        checkpoint: String(args.checkpoint),
        to: args.to,
        out: args.out,
        dtype: args.dtype,
        attention: args.attention,
        arch: args.arch,
        qkNorm: args['qk-norm'],
        hybridNorm: args['hybrid-norm'],
        layerScale: args['layer-scale'],
        towers: args.towers,
        backend: typeof args.backend === 'string' ? args.backend : undefined,
        quiet: args.quiet === true,
        debug: args.debug === true,
      }),
  );
}
