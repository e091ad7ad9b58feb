/**
 * Parametrised image augmentation `A(x; a)` as stored in DataCompDR (methods.md §2.4):
 * RandomResizedCrop → (optional horizontal flip) → RandAugment, on 8-bit RGB HWC images.
 *
 * The parameters `a` are exactly the stored JSON record
 *
 *   [[i, j, h, w], [[op, m], [op, m]] | null]          (DataCompDR)
 *   [[i, j, h, w], [[op, m], ...] | null, {"hflip": true}]   (ours: optional 3rd element)
 *
 * - `[i, j, h, w]`: RRC box in ORIGINAL image pixels (top, left, height, width).
 * - RandAugment ops: `[op index 0..13, signed magnitude]` applied in order; `null` = skipped.
 * - The optional third element `{hflip?: boolean}` is our extension (DataCompDR records never
 *   have it); the flip is applied after the resize and before RandAugment (torchvision's usual
 *   RRC → RandomHorizontalFlip → RandAugment order).
 *
 * Replay (`applyAug`) is deterministic: the same record on the same image gives byte-identical
 * output, so records can be stored as JSON and replayed later.
 *
 * Fidelity to the PIL/torchvision teacher pipeline:
 * - the crop resize is Pillow's antialiased BICUBIC (`Image.resize(size, BICUBIC)`, the same
 *   separable fixed-point resampler as `resizeBilinearPillow` with Pillow's a = −0.5 cubic kernel
 *   and support 2);
 * - geometric ops follow torchvision's `F.affine`/`F.rotate` on PIL images (inverse matrix,
 *   centre (0,0) for shear, PIL's rotate matrix) and PIL's nearest AFFINE transform including its
 *   16.16 fixed-point path, black fill;
 * - colour ops follow PIL's ImageEnhance/ImageOps (float32 blend against a degenerate image,
 *   L = (19595 R + 38470 G + 7471 B + 2^15) >> 16, SMOOTH kernel for sharpness with borders kept,
 *   LUT-based posterize/solarize/autocontrast/equalize).
 * Checked byte-exact against Pillow 9.4 on 70 records covering every op
 * (test/reinforce/augment-pil.test.ts, fixture made by fixtures/make_pil_reference.py).
 */
import { MclipError } from '../../errors.js';
import { resizePillow } from '../preprocess/pillow-resize.js';
import type { Rng } from '../random.js';

/** Interleaved RGB uint8 image (HWC, 3 channels). */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

/** RRC box in original pixels: top, left, height, width. */
export type RrcBox = [number, number, number, number];
/** One RandAugment op: [op index 0..13, signed magnitude]. */
export type RandAugOp = [number, number];
/** Optional extra (ours, not in DataCompDR records). */
export interface AugExtra {
  hflip?: boolean;
}
/** A stored augmentation record (JSON-serialisable). */
export type AugParams = [RrcBox, RandAugOp[] | null] | [RrcBox, RandAugOp[] | null, AugExtra];

export const RAND_AUG_OPS = [
  'Identity',
  'ShearX',
  'ShearY',
  'TranslateX',
  'TranslateY',
  'Rotate',
  'Brightness',
  'Color',
  'Contrast',
  'Sharpness',
  'Posterize',
  'Solarize',
  'AutoContrast',
  'Equalize',
] as const;
export type RandAugOpName = (typeof RAND_AUG_OPS)[number];

// ---------------------------------------------------------------------------------------------
// RNG

/** The seeded generator (src/base/random.ts), re-exported with the augmentation API. */
export { mulberry32, type Rng } from '../random.js';

/** Integer in [lo, hi) (like torch.randint(lo, hi)). */
function randint(rng: Rng, lo: number, hi: number): number {
  return lo + Math.floor(rng() * (hi - lo));
}

/** Python's round() (half to even). */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

// ---------------------------------------------------------------------------------------------
// Sampling

export interface AugOptions {
  /** RRC area scale range (default [0.08, 1]) */
  scale?: [number, number];
  /** RRC aspect ratio range (default [3/4, 4/3]) */
  ratio?: [number, number];
  /** output size the RandAugment translate magnitudes are computed for (default 224, as the DR teachers) */
  size?: number;
  /** probability of applying RandAugment (default 1; else the record's ops are null) */
  randAugP?: number;
  /** RandAugment ops per image (default 2) */
  numOps?: number;
  /** RandAugment magnitude bin (default 9) of `numBins` (default 31) */
  magnitude?: number;
  numBins?: number;
  /** probability of a horizontal flip (default 0: no flip field in the record) */
  hflipP?: number;
}

/** torchvision RandomResizedCrop.get_params: 10 attempts, then the centre-crop fallback. */
export function sampleRrcBox(rng: Rng, width: number, height: number, scale: [number, number] = [0.08, 1], ratio: [number, number] = [3 / 4, 4 / 3]): RrcBox {
  const area = width * height;
  const lr0 = Math.log(ratio[0]);
  const lr1 = Math.log(ratio[1]);
  for (let t = 0; t < 10; t++) {
    const target = area * (scale[0] + rng() * (scale[1] - scale[0]));
    const ar = Math.exp(lr0 + rng() * (lr1 - lr0));
    const w = roundHalfEven(Math.sqrt(target * ar));
    const h = roundHalfEven(Math.sqrt(target / ar));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const i = randint(rng, 0, height - h + 1);
      const j = randint(rng, 0, width - w + 1);
      return [i, j, h, w];
    }
  }
  const inRatio = width / height;
  let w: number;
  let h: number;
  if (inRatio < Math.min(...ratio)) {
    w = width;
    h = roundHalfEven(w / Math.min(...ratio));
  } else if (inRatio > Math.max(...ratio)) {
    h = height;
    w = roundHalfEven(h * Math.max(...ratio));
  } else {
    w = width;
    h = height;
  }
  return [Math.floor((height - h) / 2), Math.floor((width - w) / 2), h, w];
}

/** torch.linspace(start, end, steps)[i] in float32. */
function linspace(start: number, end: number, steps: number, i: number): number {
  const f = Math.fround;
  const step = f((end - start) / (steps - 1));
  return i < steps / 2 ? f(start + step * i) : f(end - step * (steps - 1 - i));
}

/** Magnitude of op `op` at bin `bin` of `numBins` for an image of `size`×`size`, and whether it is signed (torchvision `_augmentation_space`). */
export function randAugMagnitude(op: number, bin = 9, numBins = 31, size = 224): { magnitude: number; signed: boolean } {
  switch (RAND_AUG_OPS[op]) {
    case 'ShearX':
    case 'ShearY':
      return { magnitude: linspace(0, 0.3, numBins, bin), signed: true };
    case 'TranslateX':
    case 'TranslateY':
      return { magnitude: linspace(0, (150 / 331) * size, numBins, bin), signed: true };
    case 'Rotate':
      return { magnitude: linspace(0, 30, numBins, bin), signed: true };
    case 'Brightness':
    case 'Color':
    case 'Contrast':
    case 'Sharpness':
      return { magnitude: linspace(0, 0.9, numBins, bin), signed: true };
    case 'Posterize':
      return { magnitude: 8 - roundHalfEven(bin / ((numBins - 1) / 4)), signed: false };
    case 'Solarize':
      return { magnitude: linspace(255, 0, numBins, bin), signed: false };
    case 'Identity':
    case 'AutoContrast':
    case 'Equalize':
      return { magnitude: 0, signed: false };
    default:
      throw new MclipError(`RandAugment op index ${op}: expected 0..${RAND_AUG_OPS.length - 1}`);
  }
}

/** Samples one augmentation record for an image of `width`×`height` (original pixels). */
export function sampleAugParams(rng: Rng, width: number, height: number, opts: AugOptions = {}): AugParams {
  if (!(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0)) throw new MclipError(`sampleAugParams: image size must be positive integers, got ${width}x${height}`);
  const box = sampleRrcBox(rng, width, height, opts.scale, opts.ratio);
  const hflip = (opts.hflipP ?? 0) > 0 ? rng() < (opts.hflipP ?? 0) : undefined;
  let ops: RandAugOp[] | null = null;
  if (rng() < (opts.randAugP ?? 1)) {
    ops = [];
    for (let k = 0; k < (opts.numOps ?? 2); k++) {
      const op = randint(rng, 0, RAND_AUG_OPS.length);
      const { magnitude, signed } = randAugMagnitude(op, opts.magnitude ?? 9, opts.numBins ?? 31, opts.size ?? 224);
      const m = signed && randint(rng, 0, 2) === 1 ? -magnitude : magnitude;
      ops.push([op, m === 0 ? 0 : m]); // no -0 (JSON would turn it into 0 anyway)
    }
  }
  return hflip === undefined ? [box, ops] : [box, ops, { hflip }];
}

/** Validates an untrusted record (e.g. parsed JSON); `where` names it in errors. */
export function parseAugParams(x: unknown, where = 'augmentation record'): AugParams {
  const bad = (what: string): never => {
    throw new MclipError(`${where}: ${what} (expected [[i, j, h, w], [[op, m], [op, m]] | null])`);
  };
  if (!Array.isArray(x) || x.length < 2 || x.length > 3) return bad(`got ${JSON.stringify(x)?.slice(0, 80)}`);
  const box = x[0] as unknown;
  if (!Array.isArray(box) || box.length !== 4 || !box.every((v) => Number.isInteger(v))) return bad(`bad RRC box ${JSON.stringify(box)}`);
  const [i, j, h, w] = box as number[];
  if (i < 0 || j < 0 || h <= 0 || w <= 0) return bad(`RRC box ${JSON.stringify(box)} must have i, j ≥ 0 and h, w > 0`);
  let ops: RandAugOp[] | null = null;
  if (x[1] !== null) {
    if (!Array.isArray(x[1])) return bad(`bad RandAugment ops ${JSON.stringify(x[1])}`);
    ops = (x[1] as unknown[]).map((o) => {
      if (!Array.isArray(o) || o.length !== 2 || !Number.isInteger(o[0]) || typeof o[1] !== 'number' || !Number.isFinite(o[1])) return bad(`bad RandAugment op ${JSON.stringify(o)}`);
      if (o[0] < 0 || o[0] >= RAND_AUG_OPS.length) return bad(`RandAugment op index ${o[0]} out of range 0..${RAND_AUG_OPS.length - 1}`);
      return [o[0], o[1]] as RandAugOp;
    });
  }
  const out: AugParams = [[i, j, h, w], ops];
  if (x.length === 3) {
    const e = x[2] as unknown;
    if (typeof e !== 'object' || e === null || Array.isArray(e)) return bad(`bad extra field ${JSON.stringify(e)} (expected {"hflip": bool})`);
    const hf = (e as Record<string, unknown>).hflip;
    if (hf !== undefined && typeof hf !== 'boolean') return bad(`"hflip" must be a boolean`);
    return [out[0], out[1], hf === undefined ? {} : { hflip: hf }];
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Replay

function checkImage(img: RgbImage, where: string): void {
  const { width: w, height: h } = img;
  if (!(Number.isInteger(w) && Number.isInteger(h) && w > 0 && h > 0) || img.data.length !== w * h * 3)
    throw new MclipError(`${where}: expected an RGB HWC uint8 image with ${w}x${h}x3 = ${w * h * 3} bytes, got ${img.data.length}`);
}

/** Copies rows i..i+h, cols j..j+w (the box must lie inside the image). */
export function cropRgb(img: RgbImage, i: number, j: number, h: number, w: number): RgbImage {
  if (i < 0 || j < 0 || h <= 0 || w <= 0 || i + h > img.height || j + w > img.width)
    throw new MclipError(`RRC box [${i}, ${j}, ${h}, ${w}] does not fit in the ${img.width}x${img.height} image (expected i+h ≤ height, j+w ≤ width)`);
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) out.set(img.data.subarray(((i + y) * img.width + j) * 3, ((i + y) * img.width + j + w) * 3), y * w * 3);
  return { data: out, width: w, height: h };
}

/** Pillow `img.resize((outW, outH), Image.BICUBIC)` of an RGB image (antialiased when downscaling). */
export function resizeBicubicPillow(src: RgbImage, outW: number, outH: number): RgbImage {
  checkImage(src, 'resizeBicubicPillow');
  if (!(Number.isInteger(outW) && Number.isInteger(outH) && outW > 0 && outH > 0)) throw new MclipError(`resize target must be positive integers, got ${outW}x${outH}`);
  const r = resizePillow({ ...src, channels: 3 }, outW, outH, 'bicubic');
  return { data: r.data, width: r.width, height: r.height };
}

function hflip(img: RgbImage): RgbImage {
  const { width: w, height: h, data } = img;
  const out = new Uint8Array(data.length);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++) {
      const s = (y * w + x) * 3;
      const o = (y * w + (w - 1 - x)) * 3;
      out[o] = data[s];
      out[o + 1] = data[s + 1];
      out[o + 2] = data[s + 2];
    }
  return { data: out, width: w, height: h };
}

/**
 * PIL `Image.transform(size, AFFINE, m, NEAREST, fillcolor=0)` (libImaging/Geometry.c,
 * ImagingTransformAffine): output pixel (x, y) takes input pixel ⌊m·(x+½, y+½, 1)⌋ or black.
 * Like PIL, a matrix without cross terms goes through the float "scale" path (ImagingScaleAffine,
 * accumulated positions, COORD rounding) and any other matrix through the 16.16 fixed-point path
 * (affine_fixed) when the corners fit in ±32768, else the float path.
 */
function affineNearest(img: RgbImage, m: number[]): RgbImage {
  const { width: w, height: h, data } = img;
  const out = new Uint8Array(data.length); // black fill
  const put = (x: number, y: number, xs: number, ys: number): void => {
    const s = (ys * w + xs) * 3;
    const o = (y * w + x) * 3;
    out[o] = data[s];
    out[o + 1] = data[s + 1];
    out[o + 2] = data[s + 2];
  };
  const coord = (v: number): number => (v < 0 ? -1 : Math.trunc(v));
  const [a0, a1, a2, a3, a4, a5] = m;
  if (a1 === 0 && a3 === 0) {
    const xin = new Int32Array(w);
    let xo = a2 + a0 * 0.5;
    for (let x = 0; x < w; x++, xo += a0) xin[x] = coord(xo);
    let yo = a5 + a4 * 0.5;
    for (let y = 0; y < h; y++, yo += a4) {
      const ys = coord(yo);
      if (ys < 0 || ys >= h) continue;
      for (let x = 0; x < w; x++) if (xin[x] >= 0 && xin[x] < w) put(x, y, xin[x], ys);
    }
    return { data: out, width: w, height: h };
  }
  const fits = (x: number, y: number): boolean => Math.abs(a0 * x + a1 * y + a2) < 32768 && Math.abs(a3 * x + a4 * y + a5) < 32768;
  if (fits(0, 0) && fits(w, h) && fits(0, h) && fits(w, 0)) {
    const fix = (v: number): number => Math.floor(v * 65536 + 0.5) | 0;
    const f0 = fix(a0);
    const f1 = fix(a1);
    const f3 = fix(a3);
    const f4 = fix(a4);
    let f2 = fix(a2 + a0 * 0.5 + a1 * 0.5);
    let f5 = fix(a5 + a3 * 0.5 + a4 * 0.5);
    for (let y = 0; y < h; y++, f2 = (f2 + f1) | 0, f5 = (f5 + f4) | 0) {
      let xx = f2;
      let yy = f5;
      for (let x = 0; x < w; x++, xx = (xx + f0) | 0, yy = (yy + f3) | 0) {
        const xs = xx >> 16;
        const ys = yy >> 16;
        if (xs >= 0 && xs < w && ys >= 0 && ys < h) put(x, y, xs, ys);
      }
    }
    return { data: out, width: w, height: h };
  }
  let xo = a2 + a1 * 0.5 + a0 * 0.5;
  let yo = a5 + a4 * 0.5 + a3 * 0.5;
  for (let y = 0; y < h; y++, xo += a1, yo += a4) {
    let xx = xo;
    let yy = yo;
    for (let x = 0; x < w; x++, xx += a0, yy += a3) {
      const xs = coord(xx);
      const ys = coord(yy);
      if (xs >= 0 && xs < w && ys >= 0 && ys < h) put(x, y, xs, ys);
    }
  }
  return { data: out, width: w, height: h };
}

/** torchvision `_get_inverse_affine_matrix` (angle/shear in degrees). */
function inverseAffine(center: [number, number], angle: number, translate: [number, number], scale: number, shear: [number, number]): number[] {
  const rad = Math.PI / 180;
  const rot = angle * rad;
  const sx = shear[0] * rad;
  const sy = shear[1] * rad;
  const [cx, cy] = center;
  const [tx, ty] = translate;
  const a = Math.cos(rot - sy) / Math.cos(sy);
  const b = (-Math.cos(rot - sy) * Math.tan(sx)) / Math.cos(sy) - Math.sin(rot);
  const c = Math.sin(rot - sy) / Math.cos(sy);
  const d = (-Math.sin(rot - sy) * Math.tan(sx)) / Math.cos(sy) + Math.cos(rot);
  const m = [d, -b, 0, -c, a, 0].map((v) => v / scale);
  m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty);
  m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty);
  m[2] += cx;
  m[5] += cy;
  return m;
}

/** PIL Image.rotate(angle, NEAREST, expand=False, fillcolor=black). */
function rotate(img: RgbImage, angle: number): RgbImage {
  angle = ((angle % 360) + 360) % 360;
  if (angle === 0) return { ...img, data: img.data.slice() };
  const { width: w, height: h } = img;
  const r15 = (v: number): number => Math.round(v * 1e15) / 1e15;
  const t = -angle * (Math.PI / 180);
  const m = [r15(Math.cos(t)), r15(Math.sin(t)), 0, r15(-Math.sin(t)), r15(Math.cos(t)), 0];
  const cx = w / 2;
  const cy = h / 2;
  const x0 = -cx;
  const y0 = -cy;
  m[2] = m[0] * x0 + m[1] * y0 + m[2] + cx;
  m[5] = m[3] * x0 + m[4] * y0 + m[5] + cy;
  return affineNearest(img, m);
}

const luma = (r: number, g: number, b: number): number => (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;

/**
 * PIL Image.blend(degenerate, img, factor) for 8-bit data (libImaging/Blend.c): `alpha` is a C
 * float, so `in1 + alpha * (in2 - in1)` is evaluated in float32, then truncated (clipped when
 * extrapolating).
 */
function blend(deg: Uint8Array | ((i: number) => number), img: RgbImage, factor: number): RgbImage {
  const f = Math.fround;
  const src = img.data;
  const out = new Uint8Array(src.length);
  const get = typeof deg === 'function' ? deg : (i: number) => deg[i];
  const alpha = f(factor);
  for (let i = 0; i < src.length; i++) {
    const a = get(i);
    const t = f(a + f(alpha * (src[i] - a)));
    out[i] = t <= 0 ? 0 : t >= 255 ? 255 : Math.trunc(t);
  }
  return { data: out, width: img.width, height: img.height };
}

function grayOf(img: RgbImage): Uint8Array {
  const n = img.width * img.height;
  const g = new Uint8Array(n);
  const d = img.data;
  for (let p = 0; p < n; p++) g[p] = luma(d[p * 3], d[p * 3 + 1], d[p * 3 + 2]);
  return g;
}

function adjustColor(img: RgbImage, factor: number): RgbImage {
  const g = grayOf(img);
  return blend((i) => g[(i / 3) | 0], img, factor);
}

function adjustContrast(img: RgbImage, factor: number): RgbImage {
  const g = grayOf(img);
  let s = 0;
  for (let i = 0; i < g.length; i++) s += g[i];
  const mean = Math.trunc(s / g.length + 0.5);
  return blend(() => mean, img, factor);
}

function adjustSharpness(img: RgbImage, factor: number): RgbImage {
  const { width: w, height: h, data } = img;
  const sm = data.slice(); // borders keep their pixels (PIL filter3x3)
  for (let y = 1; y < h - 1; y++)
    for (let x = 1; x < w - 1; x++)
      for (let c = 0; c < 3; c++) {
        let s = 0;
        for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) s += data[((y + dy) * w + x + dx) * 3 + c] * (dx === 0 && dy === 0 ? 5 : 1);
        const v = s / 13 + 0.5;
        sm[(y * w + x) * 3 + c] = v <= 0 ? 0 : v >= 255 ? 255 : Math.trunc(v);
      }
  return blend(sm, img, factor);
}

function applyLut(img: RgbImage, luts: Uint8Array[]): RgbImage {
  const d = img.data;
  const out = new Uint8Array(d.length);
  for (let i = 0; i < d.length; i++) out[i] = luts[i % 3][d[i]];
  return { data: out, width: img.width, height: img.height };
}

function bandHistograms(img: RgbImage): Uint32Array[] {
  const hs = [new Uint32Array(256), new Uint32Array(256), new Uint32Array(256)];
  const d = img.data;
  for (let i = 0; i < d.length; i++) hs[i % 3][d[i]]++;
  return hs;
}

function autocontrast(img: RgbImage): RgbImage {
  const luts = bandHistograms(img).map((h) => {
    const lut = new Uint8Array(256);
    let lo = 0;
    while (lo < 256 && h[lo] === 0) lo++;
    let hi = 255;
    while (hi >= 0 && h[hi] === 0) hi--;
    if (hi <= lo) {
      for (let i = 0; i < 256; i++) lut[i] = i;
      return lut;
    }
    const scale = 255 / (hi - lo);
    const offset = -lo * scale;
    for (let i = 0; i < 256; i++) {
      const v = Math.trunc(i * scale + offset);
      lut[i] = v < 0 ? 0 : v > 255 ? 255 : v;
    }
    return lut;
  });
  return applyLut(img, luts);
}

function equalize(img: RgbImage): RgbImage {
  const luts = bandHistograms(img).map((h) => {
    const lut = new Uint8Array(256);
    const nz = [...h].filter((v) => v > 0);
    let step = 0;
    if (nz.length > 1) step = Math.floor((nz.reduce((a, b) => a + b, 0) - nz[nz.length - 1]) / 255);
    if (step === 0) {
      for (let i = 0; i < 256; i++) lut[i] = i;
      return lut;
    }
    let n = Math.floor(step / 2);
    for (let i = 0; i < 256; i++) {
      lut[i] = Math.min(255, Math.floor(n / step));
      n += h[i];
    }
    return lut;
  });
  return applyLut(img, luts);
}

/** Applies one RandAugment op (torchvision `_apply_op` semantics on PIL images). */
export function applyRandAugOp(img: RgbImage, op: number, m: number): RgbImage {
  const deg = 180 / Math.PI;
  switch (RAND_AUG_OPS[op]) {
    case 'Identity':
      return { ...img, data: img.data.slice() };
    case 'ShearX':
      return affineNearest(img, inverseAffine([0, 0], 0, [0, 0], 1, [Math.atan(m) * deg, 0]));
    case 'ShearY':
      return affineNearest(img, inverseAffine([0, 0], 0, [0, 0], 1, [0, Math.atan(m) * deg]));
    case 'TranslateX':
      return affineNearest(img, inverseAffine([img.width * 0.5, img.height * 0.5], 0, [Math.trunc(m), 0], 1, [0, 0]));
    case 'TranslateY':
      return affineNearest(img, inverseAffine([img.width * 0.5, img.height * 0.5], 0, [0, Math.trunc(m)], 1, [0, 0]));
    case 'Rotate':
      return rotate(img, m);
    case 'Brightness':
      return blend(() => 0, img, 1 + m);
    case 'Color':
      return adjustColor(img, 1 + m);
    case 'Contrast':
      return adjustContrast(img, 1 + m);
    case 'Sharpness':
      return adjustSharpness(img, 1 + m);
    case 'Posterize': {
      const bits = Math.max(0, Math.min(8, Math.trunc(m)));
      const mask = ~((1 << (8 - bits)) - 1) & 0xff;
      const lut = new Uint8Array(256).map((_, i) => i & mask);
      return applyLut(img, [lut, lut, lut]);
    }
    case 'Solarize': {
      const lut = new Uint8Array(256).map((_, i) => (i < m ? i : 255 - i));
      return applyLut(img, [lut, lut, lut]);
    }
    case 'AutoContrast':
      return autocontrast(img);
    case 'Equalize':
      return equalize(img);
    default:
      throw new MclipError(`RandAugment op index ${op}: expected 0..${RAND_AUG_OPS.length - 1}`);
  }
}

/**
 * Replays a record: crop the RRC box of the original image, resize it to `outSize` (Pillow
 * bicubic), flip if the record says so, then apply the RandAugment ops in order. Deterministic.
 */
export function applyAug(image: RgbImage, a: AugParams, outSize: number | { width: number; height: number } = 224): RgbImage {
  checkImage(image, 'applyAug');
  const p = parseAugParams(a);
  const ow = typeof outSize === 'number' ? outSize : outSize.width;
  const oh = typeof outSize === 'number' ? outSize : outSize.height;
  const [i, j, h, w] = p[0];
  let img = resizeBicubicPillow(cropRgb(image, i, j, h, w), ow, oh);
  if (p.length === 3 && p[2].hflip) img = hflip(img);
  for (const [op, m] of p[1] ?? []) img = applyRandAugOp(img, op, m);
  return img;
}
