/**
 * MobileCLIP's official inference transform (torchvision 0.14 on PIL 9.4):
 *   Resize(S, bilinear)  -> shorter side S, longer side floor(S * long / short), Pillow antialiased bilinear
 *   CenterCrop(S)        -> offsets round_half_even((H - S) / 2), round_half_even((W - S) / 2)
 *   ToTensor()           -> float32 CHW, uint8 / 255 (no mean/std normalisation)
 * MobileCLIP2-S3/S4/L-14 differ (`spec`): OpenAI mean/std after ToTensor, and L-14 resizes bicubic.
 */
import { check } from '../../errors.js';
import { type ImageInput, decodeImage } from './image-decode.js';
import { type U8Image, resizePillow } from './pillow-resize.js';
import { IDENTITY_PREPROCESS, type PreprocessSpec } from './spec.js';

/** torchvision's Resize(int) output size (width, height) for a (width, height) image. */
export function resizedSize(width: number, height: number, size: number): [width: number, height: number] {
  if (width <= height) return [size, Math.floor((size * height) / width)];
  return [Math.floor((size * width) / height), size];
}

/** Python round() of a multiple of 0.5: ties to even. */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d < 0.5) return f;
  if (d > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

/** torchvision CenterCrop offsets (top, left) of an S x S crop. */
export function centerCropOffsets(width: number, height: number, size: number): [top: number, left: number] {
  return [roundHalfEven((height - size) / 2), roundHalfEven((width - size) / 2)];
}

function checkSize(size: number): void {
  check(Number.isInteger(size) && size > 0, `image size must be a positive integer, got ${size}`);
}

/** Resize + center-crop + to CHW float (then `spec`'s normalisation) of decoded RGB pixels, written into `out` at `offset`. */
export function transformRgb(img: U8Image, size: number, out = new Float32Array(3 * size * size), offset = 0, spec: PreprocessSpec = IDENTITY_PREPROCESS): Float32Array {
  checkSize(size);
  const [rw, rh] = resizedSize(img.width, img.height, size);
  const r = resizePillow(img, rw, rh, spec.interpolation);
  const [top, left] = centerCropOffsets(rw, rh, size);
  const plane = size * size;
  for (let y = 0; y < size; y++) {
    const srcRow = ((y + top) * rw + left) * 3;
    const dst = offset + y * size;
    for (let x = 0; x < size; x++) {
      const p = srcRow + x * 3;
      out[dst + x] = r.data[p] / 255;
      out[dst + plane + x] = r.data[p + 1] / 255;
      out[dst + 2 * plane + x] = r.data[p + 2] / 255;
    }
  }
  for (let c = 0; c < 3; c++) {
    const [m, sd] = [spec.mean[c], spec.std[c]];
    if (m === 0 && sd === 1) continue;
    const base = offset + c * plane;
    for (let i = 0; i < plane; i++) out[base + i] = (out[base + i] - m) / sd;
  }
  return out;
}

/** One image -> Float32Array CHW (3 x size x size), values in [0, 1] (normalised by `spec` when it says so). */
export async function preprocessImage(input: ImageInput, size: number, spec: PreprocessSpec = IDENTITY_PREPROCESS): Promise<Float32Array> {
  checkSize(size);
  return transformRgb(await decodeImage(input), size, undefined, 0, spec);
}

/** Several images -> one NCHW batch. Decodes a few at a time (sharp runs on the libuv pool); `onImage` after each. */
export async function preprocessBatch(
  inputs: readonly ImageInput[],
  size: number,
  concurrency = 4,
  spec: PreprocessSpec = IDENTITY_PREPROCESS,
  onImage?: () => void,
): Promise<{ data: Float32Array; shape: [number, 3, number, number] }> {
  checkSize(size);
  const n = inputs.length;
  const per = 3 * size * size;
  const data = new Float32Array(n * per);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < n) {
      const i = next++;
      transformRgb(await decodeImage(inputs[i]), size, data, i * per, spec);
      onImage?.();
    }
  };
  await Promise.all(Array.from({ length: Math.min(Math.max(1, concurrency), n) }, worker));
  return { data, shape: [n, 3, size, size] };
}
