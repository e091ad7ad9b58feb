/**
 * The inference preprocessing of each image trunk, as open_clip's pretrained table gives it for MobileCLIP2
 * (`open_clip/pretrained.py`): S0, S2 and B (and every MobileCLIP v1 model) — mean 0, std 1, bilinear; S3 and S4
 * (`fastvit_mci3/4`) — OpenAI mean/std, bilinear; L-14 (`vit_large_patch14_clip_224`) — OpenAI mean/std,
 * bicubic. Every model resizes its shortest side to the image size, then centre-crops.
 */
import { IDENTITY_PREPROCESS, OPENAI_MEAN, OPENAI_STD, type PreprocessSpec } from '../preprocess/spec.js';
import type { ClipConfig } from './configs.js';

const BY_TRUNK: Readonly<Record<string, PreprocessSpec>> = {
  fastvit_mci3: { mean: OPENAI_MEAN, std: OPENAI_STD, interpolation: 'bilinear' },
  fastvit_mci4: { mean: OPENAI_MEAN, std: OPENAI_STD, interpolation: 'bilinear' },
  vit_large_patch14_clip_224: { mean: OPENAI_MEAN, std: OPENAI_STD, interpolation: 'bicubic' },
};

/** The preprocessing `cfg`'s image trunk expects (the identity transform unless the table says otherwise). */
export function preprocessFor(cfg: ClipConfig): PreprocessSpec {
  return BY_TRUNK[cfg.image.name] ?? IDENTITY_PREPROCESS;
}
