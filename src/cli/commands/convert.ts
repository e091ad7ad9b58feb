import type { Argv } from 'yargs';
import { statSync } from 'node:fs';
import { basename, extname } from 'node:path';
import { MclipError } from '../../errors.js';
import { writeSafetensors } from '../../base/io/safetensors.js';
import { isFloatDType, type DType, type StateDict } from '../../base/io/tensor-data.js';
import { SAVE_DTYPES, castFloat, writeTorchCheckpoint, type SaveDType } from '../../base/io/torch-writer.js';
import { FORMAT_VERSION, META_CONFIG, META_FORMAT, META_FUSED, isFusedStateDict, readCheckpointFile } from '../../base/model/checkpoint.js';
import { stripPrefix } from '../../base/model/state-dict.js';
import type { GlobalArgs } from '../run.js';
import { UsageError } from '../usage.js';

export const CONVERT_TARGETS = ['pt', 'safetensors'] as const;
type Target = (typeof CONVERT_TARGETS)[number];

/** File extensions each target writes (the first is the one error messages name). */
const EXTENSIONS: Readonly<Record<Target, readonly string[]>> = { pt: ['.pt', '.pth'], safetensors: ['.safetensors'] };

export interface ConvertArgs extends GlobalArgs {
  checkpoint: string;
  to: string;
  out: string;
  dtype?: string;
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
 * Converts a checkpoint at the state-dict level: keys (a DDP `module.` prefix dropped), fused or unfused
 * structure and dtypes are kept as they are, unless `--dtype` casts every floating tensor.
 */
export async function runConvert(args: ConvertArgs): Promise<void> {
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

export function convertCommand(y: Argv): Argv {
  return y.command(
    'convert <checkpoint>',
    'rewrite a checkpoint as a PyTorch .pt (official keys; torch.load + load_state_dict take it) or as safetensors',
    (a) =>
      a
        .positional('checkpoint', { type: 'string', demandOption: true, describe: 'official .pt, safetensors, or an mclip checkpoint' })
        .option('to', { type: 'string', demandOption: true, describe: `target format: ${CONVERT_TARGETS.join(' | ')}` })
        .option('out', { type: 'string', demandOption: true, describe: 'output file (.pt/.pth for --to pt, .safetensors for --to safetensors)' })
        .option('dtype', { type: 'string', describe: `cast every floating tensor: ${SAVE_DTYPES.join(' | ')} (default: keep; int64 stays int64)` }),
    (args) =>
      runConvert({
        checkpoint: String(args.checkpoint),
        to: args.to,
        out: args.out,
        dtype: args.dtype,
        backend: typeof args.backend === 'string' ? args.backend : undefined,
        quiet: args.quiet === true,
        debug: args.debug === true,
      }),
  );
}
