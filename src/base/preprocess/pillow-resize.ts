/**
 * Pillow's `Image.resize(size, Image.BILINEAR | Image.BICUBIC)` for 8-bit images (libImaging/Resample.c, Pillow 9.4),
 * bit for bit: a triangle (bilinear) or cubic (bicubic, a = -0.5) filter whose support is widened by the scale factor when downscaling
 * (antialiasing), coefficients normalised per output pixel and quantised to 22-bit fixed point,
 * separable — horizontal pass first, rounded to uint8, then the vertical pass. A pass whose size does
 * not change is skipped, as in Pillow.
 */

/** Interleaved 8-bit image (HWC). */
export interface U8Image {
  data: Uint8Array;
  width: number;
  height: number;
  channels: number;
}

const PRECISION_BITS = 32 - 8 - 2;
const HALF = 1 << (PRECISION_BITS - 1);
const ONE = 1 << PRECISION_BITS;

interface Coeffs {
  ksize: number;
  /** per output index: first input index and number of taps */
  bounds: Int32Array;
  /** fixed-point weights, outSize x ksize */
  kk: Int32Array;
}

/** Pillow's resampling filters: support (in input pixels at scale 1) and kernel. */
const FILTERS = {
  bilinear: { support: 1, kernel: (x: number): number => bilinear(x) },
  bicubic: { support: 2, kernel: (x: number): number => bicubic(x) },
} as const;

export type PillowFilter = keyof typeof FILTERS;

/** Pillow's bicubic kernel (a = -0.5). */
function bicubic(x: number): number {
  const a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

const bilinear = (x: number): number => {
  if (x < 0) x = -x;
  return x < 1 ? 1 - x : 0;
};

/** precompute_coeffs + normalize_coeffs_8bpc for the box [0, inSize]. */
function precomputeCoeffs(inSize: number, outSize: number, filter: PillowFilter): Coeffs {
  const { support: support0, kernel } = FILTERS[filter];
  const scale = inSize / outSize;
  const filterscale = scale < 1 ? 1 : scale;
  const support = support0 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  const ss = 1.0 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    let ww = 0;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    for (let x = 0; x < xmax; x++) {
      const w = kernel((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < ksize; x++) {
      const v = x < xmax ? (ww !== 0 ? k[x] / ww : k[x]) : 0;
      kk[xx * ksize + x] = v < 0 ? Math.trunc(-0.5 + v * ONE) : Math.trunc(0.5 + v * ONE);
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, kk };
}

const clip8 = (ss: number): number => {
  const v = Math.floor(ss / ONE); // = ss >> PRECISION_BITS, but bicubic sums may leave the int32 range
  return v < 0 ? 0 : v > 255 ? 255 : v;
};

function horizontal(src: U8Image, outW: number, y0: number, y1: number, filter: PillowFilter): U8Image {
  const { ksize, bounds, kk } = precomputeCoeffs(src.width, outW, filter);
  const C = src.channels;
  const outH = y1 - y0;
  const out = new Uint8Array(outW * outH * C);
  const sum = new Float64Array(C);
  for (let y = 0; y < outH; y++) {
    const rowIn = (y + y0) * src.width * C;
    const rowOut = y * outW * C;
    if (C === 3) {
      // the common case, with scalar accumulators
      const d = src.data;
      for (let xx = 0; xx < outW; xx++) {
        const n = bounds[xx * 2 + 1];
        const kb = xx * ksize;
        let p = rowIn + bounds[xx * 2] * 3;
        let s0 = HALF, s1 = HALF, s2 = HALF;
        for (let x = 0; x < n; x++, p += 3) {
          const w = kk[kb + x];
          s0 += d[p] * w;
          s1 += d[p + 1] * w;
          s2 += d[p + 2] * w;
        }
        const o = rowOut + xx * 3;
        out[o] = clip8(s0);
        out[o + 1] = clip8(s1);
        out[o + 2] = clip8(s2);
      }
      continue;
    }
    for (let xx = 0; xx < outW; xx++) {
      const xmin = bounds[xx * 2];
      const n = bounds[xx * 2 + 1];
      const kb = xx * ksize;
      sum.fill(HALF);
      for (let x = 0; x < n; x++) {
        const w = kk[kb + x];
        const p = rowIn + (x + xmin) * C;
        for (let c = 0; c < C; c++) sum[c] += src.data[p + c] * w;
      }
      for (let c = 0; c < C; c++) out[rowOut + xx * C + c] = clip8(sum[c]);
    }
  }
  return { data: out, width: outW, height: outH, channels: C };
}

function vertical(src: U8Image, outH: number, coeffs: Coeffs, yOffset: number): U8Image {
  const { ksize, bounds, kk } = coeffs;
  const C = src.channels;
  const W = src.width;
  const rowLen = W * C;
  const out = new Uint8Array(outH * rowLen);
  const acc = new Float64Array(rowLen);
  for (let yy = 0; yy < outH; yy++) {
    const ymin = bounds[yy * 2] - yOffset;
    const n = bounds[yy * 2 + 1];
    const kb = yy * ksize;
    acc.fill(HALF);
    for (let y = 0; y < n; y++) {
      const w = kk[kb + y];
      const base = (y + ymin) * rowLen;
      for (let i = 0; i < rowLen; i++) acc[i] += src.data[base + i] * w;
    }
    const o = yy * rowLen;
    for (let i = 0; i < rowLen; i++) out[o + i] = clip8(acc[i]);
  }
  return { data: out, width: W, height: outH, channels: C };
}

/** Pillow `img.resize((outW, outH), Image.BILINEAR)` of an 8-bit image with any channel count. */
export function resizeBilinearPillow(src: U8Image, outW: number, outH: number): U8Image {
  return resizePillow(src, outW, outH, 'bilinear');
}

/** Pillow `img.resize((outW, outH), Image.BICUBIC)` of an 8-bit image with any channel count. */
export function resizeBicubicPillow(src: U8Image, outW: number, outH: number): U8Image {
  return resizePillow(src, outW, outH, 'bicubic');
}

/** Pillow's 8-bit `Image.resize` with the given filter (antialiased when downscaling). */
export function resizePillow(src: U8Image, outW: number, outH: number, filter: PillowFilter): U8Image {
  if (!(Number.isInteger(outW) && Number.isInteger(outH) && outW > 0 && outH > 0)) {
    throw new RangeError(`resize target must be positive integers, got ${outW}x${outH}`);
  }
  const needH = outW !== src.width;
  const needV = outH !== src.height;
  if (!needH && !needV) return { ...src, data: src.data.slice() };
  const vc = precomputeCoeffs(src.height, outH, filter);
  // rows of the source the vertical pass reads
  const yFirst = vc.bounds[0];
  const yLast = vc.bounds[outH * 2 - 2] + vc.bounds[outH * 2 - 1];
  let img = src;
  let yOffset = 0;
  if (needH) {
    img = horizontal(src, outW, yFirst, yLast, filter);
    yOffset = yFirst;
  }
  if (needV) img = vertical(img, outH, vc, yOffset);
  return img;
}
