/**
 * Image input -> 8-bit RGB pixels (HWC), like PIL's `Image.open(path).convert('RGB')`: grayscale is
 * replicated to three channels, an alpha channel is DROPPED (not composited: `convert('RGB')` drops it
 * too), embedded ICC profiles are ignored and EXIF orientation is not applied (PIL applies neither).
 * Encoded images (file path or Buffer; JPEG, PNG, WebP, GIF, TIFF, AVIF, ... — whatever sharp reads)
 * are decoded with sharp; the first frame of animations is used.
 */
import { existsSync, statSync } from 'node:fs';

import sharp from 'sharp';

import { MclipError, check } from '../../errors.js';
import type { U8Image } from './pillow-resize.js';

/** Already-decoded pixels: interleaved HWC, 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA) channels. */
export interface RawImage {
  data: Uint8Array;
  width: number;
  height: number;
  channels: number;
}

/** A file path, an encoded image in memory, or raw pixels. */
export type ImageInput = string | Buffer | RawImage;

/** How an input is named in error messages. */
export function describeInput(input: ImageInput): string {
  if (typeof input === 'string') return input;
  if (Buffer.isBuffer(input)) return `<image buffer, ${input.length} bytes>`;
  return `<raw image ${input.width}x${input.height}x${input.channels}>`;
}

/** Raw pixels with 1-4 channels -> RGB (gray replicated, alpha dropped). */
export function rawToRgb(img: RawImage): U8Image {
  const { width: w, height: h, channels: c } = img;
  check(
    Number.isInteger(w) && Number.isInteger(h) && w > 0 && h > 0 && [1, 2, 3, 4].includes(c),
    `raw image: expected positive integer width/height and 1-4 channels, got ${w}x${h}x${c}`,
  );
  check(
    img.data.length === w * h * c,
    `raw image ${w}x${h}x${c}: expected ${w * h * c} bytes of HWC data, got ${img.data.length}`,
  );
  if (c === 3) return { data: img.data, width: w, height: h, channels: 3 };
  const out = new Uint8Array(w * h * 3);
  for (let i = 0, j = 0; i < out.length; i += 3, j += c) {
    if (c >= 3) {
      out[i] = img.data[j];
      out[i + 1] = img.data[j + 1];
      out[i + 2] = img.data[j + 2];
    } else {
      out[i] = out[i + 1] = out[i + 2] = img.data[j];
    }
  }
  return { data: out, width: w, height: h, channels: 3 };
}

/** Decodes any ImageInput to 8-bit RGB. Errors are one-line MclipErrors naming the input. */
export async function decodeImage(input: ImageInput): Promise<U8Image> {
  if (typeof input !== 'string' && !Buffer.isBuffer(input)) return rawToRgb(input);
  const name = describeInput(input);
  if (typeof input === 'string') {
    if (!existsSync(input)) throw new MclipError(`image ${name}: file not found`);
    if (!statSync(input).isFile()) throw new MclipError(`image ${name}: not a file`);
  }
  try {
    const { data, info } = await sharp(input, { ignoreIcc: true, failOn: 'error' })
      .removeAlpha()
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    // sharp returns 3 channels after removeAlpha + srgb; be defensive about anything else
    return rawToRgb({ data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height, channels: info.channels });
  } catch (e) {
    if (e instanceof MclipError) throw e;
    const why = String((e as Error).message ?? e).split('\n')[0];
    throw new MclipError(`image ${name}: cannot decode (expected JPEG, PNG, WebP, GIF, TIFF or AVIF): ${why}`, { cause: e });
  }
}
