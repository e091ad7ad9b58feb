/**
 * What a model's inference transform is, beyond its image size: the per-channel normalisation applied after
 * ToTensor and the resize filter (open_clip's pretrained table: `mean`, `std`, `interpolation`; the resize is
 * always to the shortest side, then a centre crop).
 */
import type { PillowFilter } from './pillow-resize.js';

export interface PreprocessSpec {
  /** Per-channel (R, G, B) mean subtracted from the [0, 1] pixels. */
  mean: readonly [number, number, number];
  /** Per-channel standard deviation the pixels are divided by after the mean. */
  std: readonly [number, number, number];
  /** Pillow filter of the shortest-side resize. */
  interpolation: PillowFilter;
}

/** MobileCLIP (v1) and MobileCLIP2-S0/S2/B: no normalisation, bilinear. */
export const IDENTITY_PREPROCESS: PreprocessSpec = { mean: [0, 0, 0], std: [1, 1, 1], interpolation: 'bilinear' };

/** OpenAI CLIP's normalisation (open_clip `OPENAI_DATASET_MEAN` / `OPENAI_DATASET_STD`). */
export const OPENAI_MEAN: readonly [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
export const OPENAI_STD: readonly [number, number, number] = [0.26862954, 0.26130258, 0.27577711];

/** True when the spec leaves the [0, 1] pixels as they are. */
export function isIdentityNormalisation(s: PreprocessSpec): boolean {
  return s.mean.every((v) => v === 0) && s.std.every((v) => v === 1);
}
