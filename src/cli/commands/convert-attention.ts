import { basename, extname } from 'node:path';
import { loadModel, saveModel } from '../../base/model/checkpoint.js';
import { SIGMOID_KERNEL, switchToSigmoid } from '../../sigmoid-attn/index.js';
import { startBackend, type GlobalArgs } from '../run.js';
import { UsageError } from '../usage.js';

/** Attention kernels `mclip convert --attention` can switch a model to. */
export const SWITCH_KERNELS = [SIGMOID_KERNEL] as const;

export interface ConvertAttentionArgs extends GlobalArgs {
  checkpoint: string;
  out: string;
  attention: string;
  arch?: string;
  qkNorm?: boolean;
  hybridNorm?: boolean;
  /** LayerScale on the attention residual with this initial gain. */
  layerScale?: number;
  /** Which towers switch: 'text', 'image' or 'both' (default). */
  towers?: string;
}

const TOWERS = ['text', 'image', 'both'] as const;

/**
 * `mclip convert CKPT --attention sigmoid [--qk-norm] [--hybrid-norm] [--layer-scale INIT] [--towers …] [--arch NAME] --out OUT.safetensors`:
 * the model with every attention layer of the chosen towers switched to sigmoid attention (b = −ln n recorded
 * in the config), the stabilisers added, every weight kept; our safetensors with the config in its header.
 */
export async function runConvertAttention(args: ConvertAttentionArgs): Promise<void> {
  if (!(SWITCH_KERNELS as readonly string[]).includes(args.attention)) {
    throw new UsageError(`--attention must be one of ${SWITCH_KERNELS.join(', ')}, got '${args.attention}'`);
  }
  if (args.layerScale !== undefined && !(Number.isFinite(args.layerScale) && args.layerScale > 0)) {
    throw new UsageError(`--layer-scale must be a positive number, got '${String(args.layerScale)}'`);
  }
  if (extname(args.out).toLowerCase() !== '.safetensors') throw new UsageError(`--attention: --out must name a .safetensors file, got '${args.out}'`);
  const towers = args.towers ?? 'both';
  if (!(TOWERS as readonly string[]).includes(towers)) throw new UsageError(`--towers must be one of ${TOWERS.join(', ')}, got '${towers}'`);
  await startBackend(args);
  const { model, storedFused } = await loadModel(args.checkpoint, { arch: args.arch });
  try {
    const switched = switchToSigmoid(model, {
      text: towers !== 'image',
      image: towers !== 'text',
      qkNorm: args.qkNorm === true,
      hybridNorm: args.hybridNorm === true,
      layerScale: args.layerScale,
      inferenceMode: storedFused,
    });
    try {
      saveModel(switched, args.out, { 'mclip.converted_from': basename(args.checkpoint) });
    } finally {
      switched.dispose();
    }
  } finally {
    model.dispose();
  }
  const extras = [args.qkNorm ? 'QK-norm' : '', args.hybridNorm ? 'hybrid-norm' : '', args.layerScale !== undefined ? `LayerScale ${args.layerScale}` : ''].filter((s) => s !== '');
  console.log(`${args.out}: ${args.attention} attention (${towers}${extras.length ? `; ${extras.join(', ')}` : ''})`);
}
