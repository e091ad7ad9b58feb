/**
 * Micro model configurations for tests that train or compare backends: every block type of the named
 * config they derive from (MCi: MobileOne stem, RepMixer stages, PatchEmbed downsamplers with and without
 * SE, RepCPE, the attention stage, conv_exp with SE and the GlobalPool2D head; text: the `mct` RepMixer
 * blocks around transformer encoders, or the causal `base` encoders), at the smallest widths, depths,
 * vocabulary and context that keep each layer meaningful. A step costs milliseconds on wasm and ~1 s on the
 * pure-JS cpu backend (whose embedding gradient, UnsortedSegmentSum, costs vocab × tokens × width), so the
 * tests stay fast on a loaded 2-core machine.
 */
import * as tf from '../src/base/tf.js';
import { getConfig, mciStages, type ClipConfig } from '../src/base/model/configs.js';

/** Context length of the micro text towers (tests build token rows of this length). */
export const MICRO_CONTEXT = 16;
/** Vocabulary of the micro text towers: SOT = MICRO_VOCAB − 2, EOT = MICRO_VOCAB − 1. */
export const MICRO_VOCAB = 256;

/**
 * `mobileclip_tiny` (or `mobileclip_tiny_base`) at micro size: MCi widths 8/16/32/64 with one block per
 * stage (the last stage: attention, 4 heads of 16), 32×32 input, text width 64 (2 heads), one transformer
 * encoder (plus the two RepMixer blocks of `mct`), context 16, vocabulary 256, embedding 64.
 */
export function microConfig(base: 'mobileclip_tiny' | 'mobileclip_tiny_base' = 'mobileclip_tiny'): ClipConfig {
  const cfg = getConfig(base);
  if (cfg.image.kind !== 'mci') throw new Error(`${base}: expected an MCi image tower`);
  cfg.name = `${base}_micro`;
  cfg.embedDim = 64;
  cfg.image = { ...cfg.image, name: 'mci_micro', imageSize: 32, layers: [1, 1, 1, 1], embedDims: [8, 16, 32, 64], headDim: 16 };
  cfg.text = { ...cfg.text, contextLength: MICRO_CONTEXT, vocabSize: MICRO_VOCAB, dim: 64, nHeads: 2, nTransformerLayers: 1 };
  return cfg;
}

/**
 * The micro config made uneven, as a pruned or inherited model is: every text layer has its own heads,
 * head width and FFN width (attention inner widths 48 and 32 against a residual width of 64), the RepMixer
 * blocks have their own ConvFFN widths, stage 3 has two blocks of different ConvFFN widths, and the attention
 * stage has 3 heads of 16 (inner 48) on a 64-wide residual.
 */
export function unevenMicroConfig(): ClipConfig {
  const cfg = microConfig();
  if (cfg.image.kind !== 'mci') throw new Error('expected an MCi image tower');
  cfg.name = 'uneven_micro';
  cfg.text.layers = [
    { mixer: 'repmixer', ffnDim: 96 },
    { mixer: 'attention', heads: 3, headDim: 16, ffnDim: 80 },
    { mixer: 'attention', heads: 1, headDim: 32, ffnDim: 200 },
    { mixer: 'repmixer', ffnDim: 48 },
  ];
  const stages = mciStages(cfg.image);
  stages[1].ffnDims = [40];
  stages[2].depth = 2;
  stages[2].ffnDims = [64, 100];
  stages[3].heads = 3;
  stages[3].ffnDims = [150];
  cfg.image.stages = stages;
  return cfg;
}

/** Four token rows of the micro text towers (SOT, 4–13 words, EOT, zero padding; EOT at different positions). */
export function microTokenRows(): tf.Tensor2D {
  const rows = [5, 9, 3, 14].map((len, r) => Array.from({ length: MICRO_CONTEXT }, (_, j) => (j === 0 ? MICRO_VOCAB - 2 : j < len ? 1 + ((r * 37 + j * 11) % (MICRO_VOCAB - 3)) : j === len ? MICRO_VOCAB - 1 : 0)));
  return tf.tensor2d(rows, [4, MICRO_CONTEXT], 'int32');
}
