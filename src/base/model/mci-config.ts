import type { MciConfig } from './configs.js';

/**
 * A four-stage MCi (FastViT) trunk with MobileCLIP's settings — RepMixer ×3 then attention, RepCPE before
 * the last stage, SE in the last two downsamplers, ConvFFN ×3, 32-wide heads — at `imageSize` (default 256).
 * Serves the v1 named configs (`configs.ts`) and timm's `fastvit_mci0…2` (`configs-mobileclip2.ts`).
 */
export function mciConfig(name: string, layers: number[], embedDims: number[], imageSize = 256): MciConfig {
  return {
    kind: 'mci',
    name,
    imageSize,
    layers,
    embedDims,
    mlpRatio: 3,
    headDim: 32,
    posEmbs: [false, false, false, true],
    seDownsamples: [false, false, true, true],
    repmixerKernel: 3,
    downPatchSize: 7,
    downStride: 2,
    clsRatio: 2,
    layerScaleInit: 1e-5,
  };
}
