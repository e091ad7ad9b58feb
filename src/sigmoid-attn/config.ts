import { MclipError } from '../errors.js';
import { mciStages, textLayers, vitBlocks, type ClipConfig, type ImageConfig, type TextConfig } from '../base/model/configs.js';
import { BIAS_PARAM, SIGMOID_KERNEL, sigmoidBias } from './kernel.js';

/** Which towers switch to sigmoid attention, and the stabilisers added to their transformer layers. */
export interface SigmoidOptions {
  /** The text transformer layers (default true). */
  text?: boolean;
  /** The MCi attention stages or the ViT-B layers (default true). */
  image?: boolean;
  /** QK-norm (LayerNorm on each head's q and k) on the switched text / ViT layers and MCi attention stages (default false). */
  qkNorm?: boolean;
  /** Hybrid-norm (LayerNorm on the attention output before the residual add) on the switched text / ViT layers and MCi attention stages (default false). */
  hybridNorm?: boolean;
  /** LayerScale on the attention residual of the switched text / ViT layers, with this initial gain (e.g. 1e-4); default none. MCi attention blocks have their own (layer_scale_1) and keep it. */
  layerScale?: number;
}

/** The stabiliser fields of a switched transformer layer (only those asked for; MCi stages keep their LayerScale). */
function stabilisers(opts: SigmoidOptions): { qkNorm?: true; attnOutNorm?: true; attnLayerScale?: number } {
  if (opts.layerScale !== undefined && !(Number.isFinite(opts.layerScale) && opts.layerScale > 0)) {
    throw new MclipError(`sigmoid attention: the LayerScale init must be a positive number, got ${opts.layerScale}`);
  }
  return {
    ...(opts.qkNorm ? { qkNorm: true } : {}),
    ...(opts.hybridNorm ? { attnOutNorm: true } : {}),
    ...(opts.layerScale !== undefined ? { attnLayerScale: opts.layerScale } : {}),
  };
}

/** The stabiliser fields of a switched MCi attention stage: QK-norm and hybrid-norm (its LayerScale γ₁ is already there). */
function mciStabilisers(opts: SigmoidOptions): { qkNorm?: true; attnOutNorm?: true } {
  return { ...(opts.qkNorm ? { qkNorm: true } : {}), ...(opts.hybridNorm ? { attnOutNorm: true } : {}) };
}

/** Keys per query of the text layers: the context length (pads are real keys in S0–S2; methods.md §5). */
export function textKeys(t: TextConfig): number {
  return t.contextLength;
}

/** Keys per query of MCi stage i at the config's image size: (size / (4·2^i))² (stem /4, each downsampler /2). */
export function mciKeys(imageSize: number, stage: number): number {
  const side = Math.floor(imageSize / (4 * 2 ** stage));
  if (side < 1) throw new MclipError(`sigmoid attention: MCi stage ${stage + 1} has no tokens at ${imageSize} px`);
  return side * side;
}

/** Keys per query of the ViT-B/16 layers: the patches plus CLS. */
export function vitKeys(imageSize: number): number {
  const side = Math.floor(imageSize / 16);
  return side * side + 1;
}

function sigmoidParams(n: number): Record<string, number> {
  return { [BIAS_PARAM]: sigmoidBias(n) };
}

function imageWithSigmoid(image: ImageConfig, opts: SigmoidOptions): ImageConfig {
  if (image.kind === 'mci') {
    const stages = mciStages(image).map((s, i) => (s.mixer === 'attention' ? { ...s, attention: SIGMOID_KERNEL, attentionParams: sigmoidParams(mciKeys(image.imageSize, i)), ...mciStabilisers(opts) } : s));
    return { ...image, stages };
  }
  const n = vitKeys(image.imageSize);
  return { ...image, blocks: vitBlocks(image).map((b) => ({ ...b, attention: SIGMOID_KERNEL, attentionParams: sigmoidParams(n), ...stabilisers(opts) })) };
}

/**
 * `cfg` with sigmoid attention in the chosen towers: every attention layer's kernel 'sigmoid' with its bias
 * b = −ln n recorded (`attentionParams.bias`; n from the config's context length / image size), in the
 * per-layer form, with the stabilisers asked for on the text / ViT transformer layers and the MCi attention stages. Without stabilisers
 * every weight shape is unchanged, so a softmax checkpoint's weights fit as they are.
 */
export function withSigmoidAttention(cfg: ClipConfig, opts: SigmoidOptions = {}): ClipConfig {
  const out = structuredClone(cfg);
  if (opts.text ?? true) {
    const n = textKeys(out.text);
    out.text.layers = textLayers(out.text).map((l) => (l.mixer === 'attention' ? { ...l, attention: SIGMOID_KERNEL, attentionParams: sigmoidParams(n), ...stabilisers(opts) } : l));
  }
  if (opts.image ?? true) out.image = imageWithSigmoid(out.image, opts);
  return out;
}
