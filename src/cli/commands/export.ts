import type { Argv } from 'yargs';
import { withOptions, type OptionTable } from '../options.js';
import { MclipError } from '../../errors.js';
import { loadModel } from '../../base/model/checkpoint.js';
import { EXPORT_TEXT_PADDINGS, exportOnnx, isExportTextPadding, ortLatency, MAX_OPSET, MIN_OPSET, TOWERS, type Tower } from '../../export/index.js';
import { startBackend, type GlobalArgs } from '../run.js';

export interface ExportArgs extends GlobalArgs {
  checkpoint: string;
  arch?: string;
  out: string;
  tower: string;
  opset: number;
  imageSize?: number;
  tokensDtype: string;
  textPadding?: string;
  verify: boolean;
  latency: boolean;
}

export async function runExport(args: ExportArgs): Promise<void> {
  if (!TOWERS.includes(args.tower as Tower)) throw new MclipError(`--tower must be one of ${TOWERS.join(', ')}, got '${args.tower}'`);
  if (!Number.isInteger(args.opset) || args.opset < MIN_OPSET || args.opset > MAX_OPSET) {
    throw new MclipError(`--opset must be an integer in [${MIN_OPSET}, ${MAX_OPSET}], got ${args.opset}`);
  }
  if (args.tokensDtype !== 'int64' && args.tokensDtype !== 'int32') throw new MclipError(`--tokens-dtype must be int64 or int32, got '${args.tokensDtype}'`);
  const textPadding = args.textPadding ?? 'as-trained';
  if (!isExportTextPadding(textPadding)) throw new MclipError(`--text-padding must be one of ${EXPORT_TEXT_PADDINGS.join(', ')}, got '${textPadding}'`);
  if (textPadding !== 'as-trained' && args.tower === 'image') throw new MclipError(`--text-padding ${textPadding} needs the text tower (--tower text or both)`);
  if (!args.out.toLowerCase().endsWith('.onnx')) throw new MclipError(`--out must name a .onnx file, got '${args.out}'`);
  await startBackend(args);
  const { model } = await loadModel(args.checkpoint, { arch: args.arch, fused: true });
  try {
    const r = await exportOnnx(model, args.out, {
      tower: args.tower as Tower,
      opset: args.opset,
      imageSize: args.imageSize,
      tokensDtype: args.tokensDtype,
      textPadding,
      verify: args.verify,
    });
    const mb = (r.bytes / 2 ** 20).toFixed(1);
    const diffs = r.verify ? Object.entries(r.verify.relDiff).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(', ') : 'not verified';
    const seq = r.textPadding === 'truncate' ? ', text padding truncate: tokens [batch, seq ≤ context length]' : '';
    if (!args.quiet) console.error(`mclip: wrote ${r.path} (${mb} MiB, ${r.tower}, opset ${r.opset}${seq}); onnxruntime vs tfjs max rel. diff: ${diffs}`);
    if (args.latency) {
      const towers = r.tower === 'both' ? (['image', 'text'] as const) : [r.tower];
      for (const t of towers) {
        for (const batch of [1, 8]) {
          const l = await ortLatency(r.path, t, { batch, runs: 30, warmup: 5, threads: 2 });
          console.log(`${t} batch ${batch}: median ${l.medianMs.toFixed(2)} ms, p90 ${l.p90Ms.toFixed(2)} ms (onnxruntime-node CPU, 2 threads, ${l.runs} runs)`);
        }
      }
    }
  } finally {
    model.dispose();
  }
}

export const EXPORT_OPTIONS = {
  checkpoint: { type: 'string', demandOption: true, describe: 'official .pt, safetensors, or an mclip checkpoint' },
  arch: { type: 'string', describe: 'architecture for checkpoints without a config (mobileclip_s0, …)' },
  out: { type: 'string', demandOption: true, describe: 'output .onnx file' },
  tower: { type: 'string', default: 'both', choices: [...TOWERS], describe: "image: 'image'→'image_features'; text: 'tokens'→'text_features'; both: one model with both" },
  opset: { type: 'number', default: MIN_OPSET, describe: `ONNX opset (${MIN_OPSET}–${MAX_OPSET}; ≥ 20 uses the Gelu op)` },
  'image-size': { type: 'number', describe: "input H = W (default: the model's image size)" },
  'tokens-dtype': { type: 'string', default: 'int64', choices: ['int64', 'int32'], describe: "element type of the 'tokens' input" },
  'text-padding': {
    type: 'string',
    default: 'as-trained',
    choices: [...EXPORT_TEXT_PADDINGS],
    describe: "as-trained: tokens [batch, context length]; truncate: tokens [batch, seq ≤ context length], a batch cut to its longest row (+ spare pads; exact for causal towers, approximate for mct), recorded as mclip.text_padding",
  },
  verify: { type: 'boolean', default: true, describe: 'check onnxruntime-node against tfjs on random inputs (max rel. diff ≤ 1e-4)' },
  latency: { type: 'boolean', default: false, describe: 'print onnxruntime-node latency (batch 1 and 8, 2 threads, median/p90 of 30 runs)' },
} as const satisfies OptionTable;

export function exportCommand(y: Argv): Argv {
  return y.command<ExportArgs>(
    'export',
    'write the fused inference graph as ONNX (verified with onnxruntime-node against the tfjs model)',
    (a) =>
      withOptions(a, EXPORT_OPTIONS) as unknown as Argv<ExportArgs>,
    (args) => runExport(args),
  );
}
