import type { Argv } from 'yargs';
import { withOptions, type OptionTable } from '../options.js';
import { basename } from 'node:path';
import { MclipError } from '../../errors.js';
import type { StateDict } from '../../base/io/tensor-data.js';
import { writeSafetensors } from '../../base/io/safetensors.js';
import type { ClipConfig } from '../../base/model/configs.js';
import { FORMAT_VERSION, META_CONFIG, META_FORMAT, META_FUSED, loadModel, readCheckpointFile } from '../../base/model/checkpoint.js';
import { exportStateDict, stripPrefix } from '../../base/model/state-dict.js';
import { INHERIT_FLAGS, inheritWeights, stateDictParams, type InheritSpec, type TowerParams } from '../../distill/inherit.js';
import { startBackend, type GlobalArgs } from '../run.js';
import { UsageError } from '../usage.js';

export interface InheritArgs extends GlobalArgs {
  from: string;
  out: string;
  arch?: string;
  textLayers?: number;
  textWidth?: number;
  textHeads?: number;
  textFfn?: number;
  imageDepths?: string;
  imageWidths?: string;
  imageFfnRatio?: number;
  vitLayers?: number;
}

/** A positive integer flag (yargs already turned non-numbers into a usage error). */
function int(flag: keyof InheritSpec, v: number | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!Number.isInteger(v) || v < 1) throw new UsageError(`${INHERIT_FLAGS[flag]}: expected a positive integer, got ${v}`);
  return v;
}

/** `a,b,c,d` → positive integers (the count is checked against the teacher's stages). */
function intList(flag: keyof InheritSpec, v: string | undefined): number[] | undefined {
  if (v === undefined) return undefined;
  const parts = v.split(',').map((s) => s.trim());
  if (parts.some((p) => !/^\d+$/.test(p) || Number(p) < 1)) throw new UsageError(`${INHERIT_FLAGS[flag]}: expected comma-separated positive integers (a,b,c,d), got '${v}'`);
  return parts.map(Number);
}

/** The student's sizes from the flags (usage errors for malformed values; sizes are checked against the teacher later). */
export function inheritSpecFromArgs(args: InheritArgs): InheritSpec {
  const ratio = args.imageFfnRatio;
  if (ratio !== undefined && !(Number.isFinite(ratio) && ratio > 0)) throw new UsageError(`${INHERIT_FLAGS.imageFfnRatio}: expected a positive number, got ${ratio}`);
  return {
    textLayers: int('textLayers', args.textLayers),
    textWidth: int('textWidth', args.textWidth),
    textHeads: int('textHeads', args.textHeads),
    textFfn: int('textFfn', args.textFfn),
    imageDepths: intList('imageDepths', args.imageDepths),
    imageWidths: intList('imageWidths', args.imageWidths),
    imageFfnRatio: ratio,
    vitLayers: int('vitLayers', args.vitLayers),
  };
}

const millions = (n: number): string => `${(n / 1e6).toFixed(3)} M`;
const counts = (p: TowerParams): string => `image ${millions(p.image)} (${p.image}), text ${millions(p.text)} (${p.text})`;

export async function runInherit(args: InheritArgs): Promise<void> {
  const spec = inheritSpecFromArgs(args);
  if (!args.out.toLowerCase().endsWith('.safetensors')) throw new MclipError(`--out must name a .safetensors file, got '${args.out}'`);
  await startBackend(args);
  let teacher: StateDict;
  let teacherConfig: ClipConfig | null;
  if (args.arch) {
    // --arch: the teacher must fit the named architecture (the usual wrong---arch message otherwise).
    const { model, config } = await loadModel(args.from, { arch: args.arch });
    try {
      teacher = exportStateDict(model);
    } finally {
      model.dispose();
    }
    teacherConfig = config;
  } else {
    const file = await readCheckpointFile(args.from);
    teacher = stripPrefix(file.sd, 'module.');
    teacherConfig = file.config;
  }
  const r = inheritWeights(teacher, spec, { teacherConfig, source: args.from });
  writeSafetensors(args.out, r.stateDict, {
    'mclip.inherited_from': basename(args.from),
    'mclip.inherit_spec': JSON.stringify(spec), // undefined fields drop out
    [META_FORMAT]: FORMAT_VERSION,
    [META_CONFIG]: JSON.stringify(r.config),
    [META_FUSED]: String(r.fused),
  });
  const imageMap = r.config.image.kind === 'mci' ? r.imageMap.map((s) => `[${s.join(',')}]`).join(' ') : r.imageMap[0].join(',');
  console.log(`teacher ${r.teacherConfig.name}: ${counts(stateDictParams(teacher))} trainable parameters`);
  console.log(`student ${r.config.name}: ${counts(stateDictParams(r.stateDict))} trainable parameters`);
  if (!args.quiet) {
    console.error(`mclip: wrote ${args.out} (${r.fused ? 'fused' : 'unfused'}; text layers ${r.textMap.join(',')} and image blocks ${imageMap} of the teacher)`);
  }
}

export const INHERIT_OPTIONS = {
  from: { type: 'string', demandOption: true, describe: 'teacher: official .pt, safetensors, or an mclip checkpoint (fused or not)' },
  out: { type: 'string', demandOption: true, describe: 'student .safetensors (config in the header; the teacher\'s dtypes)' },
  arch: { type: 'string', describe: 'check the teacher against this architecture (default: read off its shapes)' },
  'text-layers': { type: 'number', describe: 'text transformer layers (picked at stride ⌊L/N⌋; mct RepMixer blocks stay)' },
  'text-width': { type: 'number', describe: 'text width (first channels; FFNs keep their ratio unless --text-ffn)' },
  'text-heads': { type: 'number', describe: 'text heads (whole heads of the teacher\'s width: text width = heads × d_h)' },
  'text-ffn': { type: 'number', describe: 'FFN width of every text transformer layer' },
  'image-depths': { type: 'string', describe: 'MCi blocks per stage, a,b,c,d (picked at stride within each stage)' },
  'image-widths': { type: 'string', describe: 'MCi widths per stage, a,b,c,d (first channels; each 2× the previous, as the teacher)' },
  'image-ffn-ratio': { type: 'number', describe: 'MCi ConvFFN width = ⌊width × ratio⌋ (default: the teacher\'s ratio)' },
  'vit-layers': { type: 'number', describe: 'ViT layers (picked at stride)' },
} as const satisfies OptionTable;

export function inheritCommand(y: Argv): Argv {
  return y.command(
    'inherit',
    'cut a smaller student out of a teacher checkpoint (TinyCLIP manual weight inheritance: strided layers, prefix widths)',
    (a) =>
      withOptions(a, INHERIT_OPTIONS),
    (args) =>
      runInherit({
        from: args.from,
        out: args.out,
        arch: args.arch,
        textLayers: args.textLayers,
        textWidth: args.textWidth,
        textHeads: args.textHeads,
        textFfn: args.textFfn,
        imageDepths: args.imageDepths,
        imageWidths: args.imageWidths,
        imageFfnRatio: args.imageFfnRatio,
        vitLayers: args.vitLayers,
        backend: typeof args.backend === 'string' ? args.backend : undefined,
        quiet: args.quiet === true,
        debug: args.debug === true,
      }),
  );
}
