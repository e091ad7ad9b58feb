/**
 * MobileCLIP2 (and open_clip's MobileCLIP v1) named configs, as open_clip builds them
 * (`open_clip/model_configs/MobileCLIP2-*.json`): a timm image trunk whose classifier head (with bias) is the
 * projection, and open_clip's 12-layer `TextTransformer` (non-causal except B, argmax pooling, `text_projection`).
 */
import type { ClipConfig, MciConfig, MciStageConfig, TextConfig, VitConfig } from './configs.js';
import { mciConfig } from './mci-config.js';

/** timm `fastvit_mci0…2`: four stages, RepMixer ×3 then attention, SE in the last two downsamplers. */
function fastvitMci(name: string, layers: number[], embedDims: number[]): MciConfig {
  return { ...mciConfig(name, layers, embedDims), headBias: true };
}

/**
 * timm `fastvit_mci3/4`: five stages (RepMixer ×3, then two attention stages with RepCPE and a LayerNorm2d
 * pre-norm), no SE in the downsamplers, FFN ×4, a stem without the 1×1 scale branch.
 */
function fastvitMci5(name: string, layers: number[], embedDims: number[]): MciConfig {
  const stages: MciStageConfig[] = layers.map((depth, i) => {
    const width = embedDims[i];
    const s: MciStageConfig = { depth, width, mixer: i >= 3 ? 'attention' : 'repmixer', ffnDims: new Array<number>(depth).fill(4 * width), posEmb: i >= 3, seDownsample: false };
    if (i >= 3) Object.assign(s, { heads: width / 32, headDim: 32, norm: 'layer' });
    return s;
  });
  return {
    ...fastvitMci(name, layers, embedDims),
    mlpRatio: 4,
    posEmbs: layers.map((_, i) => i >= 3),
    seDownsamples: layers.map(() => false),
    stemScaleBranch: false,
    stages,
  };
}

/** open_clip `TextTransformer`: 12 pre-LN layers, 64-wide heads, FFN ×4. */
function openClipText(width: number, causal: boolean): TextConfig {
  return {
    modelName: 'base',
    contextLength: 77,
    vocabSize: 49408,
    dim: width,
    nTransformerLayers: 12,
    nHeads: width / 64,
    ffnMultiplier: 4,
    causalMasking: causal,
    repmixerKernel: 11,
  };
}

/** timm `vit_base_mci_224`: ViT-B/16 behind MobileCLIP's conv stem (unpadded), CLS pooling, head with bias. */
const VIT_BASE_MCI: VitConfig = { kind: 'vit', name: 'vit_base_mci_224', imageSize: 224, embedDim: 768, layers: 12, heads: 12, posGrid: 14, stemNoPadding: true, headBias: true };

/** timm `vit_large_patch14_clip_224`: ViT-L/14 (patchify conv, CLS row in the positions, pre-norm), head with bias. */
const VIT_L14_CLIP: VitConfig = { kind: 'vit', name: 'vit_large_patch14_clip_224', imageSize: 224, embedDim: 1024, layers: 24, heads: 16, posGrid: 16, patchSize: 14, headBias: true };

export const MOBILECLIP2_CONFIGS: Record<string, ClipConfig> = {
  mobileclip2_s0: { name: 'mobileclip2_s0', embedDim: 512, image: fastvitMci('fastvit_mci0', [2, 6, 10, 2], [64, 128, 256, 512]), text: openClipText(512, false) },
  mobileclip2_s2: { name: 'mobileclip2_s2', embedDim: 512, image: fastvitMci('fastvit_mci2', [4, 12, 24, 4], [80, 160, 320, 640]), text: openClipText(512, false) },
  mobileclip2_b: { name: 'mobileclip2_b', embedDim: 512, image: VIT_BASE_MCI, text: openClipText(512, true) },
  mobileclip2_s3: { name: 'mobileclip2_s3', embedDim: 768, image: fastvitMci5('fastvit_mci3', [2, 12, 24, 4, 2], [96, 192, 384, 768, 1536]), text: openClipText(768, false) },
  mobileclip2_s4: { name: 'mobileclip2_s4', embedDim: 768, image: fastvitMci5('fastvit_mci4', [2, 12, 24, 4, 4], [128, 256, 512, 1024, 2048]), text: openClipText(768, false) },
  mobileclip2_l14: { name: 'mobileclip2_l14', embedDim: 768, image: VIT_L14_CLIP, text: openClipText(768, false) },
};
