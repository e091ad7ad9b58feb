import { describe, expect, test } from 'vitest';
import {
  applyAug,
  applyRandAugOp,
  mulberry32,
  parseAugParams,
  randAugMagnitude,
  resizeBicubicPillow,
  sampleAugParams,
  sampleRrcBox,
  type AugParams,
  type RgbImage,
} from '../../src/base/data/augment.js';
import { MclipError } from '../../src/errors.js';

/** A deterministic, textured test image. */
function testImage(width: number, height: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * 3;
      data[o] = (x * 7 + y * 3) & 255;
      data[o + 1] = (x * y) & 255;
      data[o + 2] = ((x >> 3) ^ (y >> 3)) & 1 ? 220 : 30;
    }
  return { data, width, height };
}
const flat = (w: number, h: number, v: number | [number, number, number]): RgbImage => {
  const c = typeof v === 'number' ? [v, v, v] : v;
  const data = new Uint8Array(w * h * 3);
  for (let i = 0; i < data.length; i++) data[i] = c[i % 3];
  return { data, width: w, height: h };
};
const px = (img: RgbImage, x: number, y: number): number[] => [...img.data.subarray((y * img.width + x) * 3, (y * img.width + x) * 3 + 3)];

describe('rng and sampling', () => {
  test('mulberry32 is reproducible and in [0, 1)', () => {
    const a = mulberry32(42);
    const b = mulberry32(42);
    const xs = Array.from({ length: 1000 }, () => a());
    expect(xs).toEqual(Array.from({ length: 1000 }, () => b()));
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
    expect(mulberry32(43)()).not.toBe(xs[0]);
  });

  test('RRC boxes lie inside the image, respect scale/ratio', () => {
    const rng = mulberry32(1);
    for (let t = 0; t < 500; t++) {
      const W = 50 + Math.floor(rng() * 400);
      const H = 50 + Math.floor(rng() * 400);
      const [i, j, h, w] = sampleRrcBox(rng, W, H);
      expect(i >= 0 && j >= 0 && i + h <= H && j + w <= W && h > 0 && w > 0).toBe(true);
      const area = (h * w) / (W * H);
      expect(area).toBeLessThanOrEqual(1);
    }
  });

  test('RRC falls back to the centre crop after 10 failed attempts', () => {
    // a 1000x10 strip: every attempt is too tall, so torchvision centre-crops to ratio 4/3
    expect(sampleRrcBox(() => 0.999, 1000, 10)).toEqual([0, 493, 10, 13]);
    expect(sampleRrcBox(() => 0.999, 10, 1000)).toEqual([493, 0, 13, 10]); // w = 10, h = round(10 / (3/4)) = 13
  });

  test('RandAugment magnitudes at bin 9 of 31 match the table', () => {
    expect(randAugMagnitude(1).magnitude).toBeCloseTo(0.09, 6);
    expect(randAugMagnitude(3).magnitude).toBeCloseTo(30.45, 2);
    expect(randAugMagnitude(5).magnitude).toBeCloseTo(9, 5);
    expect(randAugMagnitude(6).magnitude).toBeCloseTo(0.27, 6);
    expect(randAugMagnitude(10)).toEqual({ magnitude: 7, signed: false });
    expect(randAugMagnitude(11)).toEqual({ magnitude: 178.5, signed: false });
    expect(randAugMagnitude(12)).toEqual({ magnitude: 0, signed: false });
    expect(() => randAugMagnitude(14)).toThrow(MclipError);
  });

  test('sampled records have the stored layout and are reproducible', () => {
    const a = sampleAugParams(mulberry32(7), 640, 480);
    const b = sampleAugParams(mulberry32(7), 640, 480);
    expect(a).toEqual(b);
    expect(a.length).toBe(2);
    expect(a[0]).toHaveLength(4);
    expect(a[1]).toHaveLength(2);
    for (const [op] of a[1]!) expect(op >= 0 && op < 14).toBe(true);
    expect(sampleAugParams(mulberry32(7), 640, 480, { randAugP: 0 })[1]).toBeNull();
    const f = sampleAugParams(mulberry32(7), 640, 480, { hflipP: 1 });
    expect(f[2]).toEqual({ hflip: true });
  });
});

describe('ops', () => {
  test('bicubic resize: constant stays constant, same size copies', () => {
    const r = resizeBicubicPillow(flat(37, 23, [10, 128, 250]), 16, 9);
    expect(r.width).toBe(16);
    expect(r.height).toBe(9);
    for (let i = 0; i < r.data.length; i += 3) expect([r.data[i], r.data[i + 1], r.data[i + 2]]).toEqual([10, 128, 250]);
    const img = testImage(8, 8);
    expect(resizeBicubicPillow(img, 8, 8).data).toEqual(img.data);
    // upscaling a step edge overshoots (cubic ringing) but is clipped to [0, 255]
    const up = resizeBicubicPillow(testImage(16, 16), 40, 40);
    expect(up.data.length).toBe(40 * 40 * 3);
  });

  test('colour ops on known values', () => {
    const img = flat(4, 4, [100, 101, 200]);
    expect(px(applyRandAugOp(img, 6, -0.5), 0, 0)).toEqual([50, 50, 100]); // Brightness ×0.5
    expect(px(applyRandAugOp(img, 10, 7), 0, 0)).toEqual([100, 100, 200]); // Posterize 7 bits
    expect(px(applyRandAugOp(img, 11, 178.5), 0, 0)).toEqual([100, 101, 55]); // Solarize
    expect(px(applyRandAugOp(img, 0, 0), 0, 0)).toEqual([100, 101, 200]);
    expect(px(applyRandAugOp(flat(3, 3, 77), 7, 0.9), 1, 1)).toEqual([77, 77, 77]); // Color of gray = gray
    expect(px(applyRandAugOp(flat(3, 3, 77), 8, 0.9), 1, 1)).toEqual([77, 77, 77]); // Contrast of flat = flat
    expect(px(applyRandAugOp(flat(3, 3, 250), 6, 0.27), 1, 1)).toEqual([255, 255, 255]); // clipped
  });

  test('autocontrast and equalize stretch per band', () => {
    const img = flat(2, 1, 0);
    img.data.set([50, 60, 70, 150, 160, 170]);
    const ac = applyRandAugOp(img, 12, 0);
    // PIL: int(170 * 2.55 - 70 * 2.55) = int(254.99999999999997) = 254 in doubles, as here
    expect([...ac.data]).toEqual([0, 0, 0, 255, 255, 254]);
    // equalize: too few pixels (step = (2 - 1) // 255 = 0) → identity, as PIL
    expect([...applyRandAugOp(img, 13, 0).data]).toEqual([...img.data]);
    const big = flat(32, 16, 10);
    big.data.fill(20, big.data.length / 2);
    const eq = applyRandAugOp(big, 13, 0);
    expect(px(eq, 0, 0)).toEqual([0, 0, 0]);
    expect(px(eq, 31, 15)).toEqual([255, 255, 255]);
  });

  test('translate, shear, rotate: geometry and black fill', () => {
    const img = testImage(20, 10);
    const tx = applyRandAugOp(img, 3, 5.7); // int(5.7) = 5 px right
    expect(px(tx, 7, 3)).toEqual(px(img, 2, 3));
    expect(px(tx, 4, 3)).toEqual([0, 0, 0]);
    const ty = applyRandAugOp(img, 4, -3.2); // 3 px up
    expect(px(ty, 5, 2)).toEqual(px(img, 5, 5));
    expect(px(ty, 5, 8)).toEqual([0, 0, 0]);
    expect(applyRandAugOp(img, 1, 0).data).toEqual(img.data);
    expect(applyRandAugOp(img, 5, 0).data).toEqual(img.data);
    const sh = applyRandAugOp(img, 1, 0.3); // x_in = x + 0.3 y (centre 0,0): row 0 unchanged
    expect(px(sh, 10, 0)).toEqual(px(img, 10, 0));
    expect(px(sh, 0, 9)).toEqual(px(img, Math.trunc(0.5 + 0.3 * 9.5), 9));
    const rot = applyRandAugOp(testImage(32, 32), 5, 30);
    expect(px(rot, 0, 0)).toEqual([0, 0, 0]); // corners rotate out
  });
});

describe('replay', () => {
  test('applyAug(x, a) is byte-identical after a JSON round trip of a', () => {
    const img = testImage(97, 61);
    const rng = mulberry32(2024);
    const seen = new Set<string>();
    for (let t = 0; t < 40; t++) {
      const a = sampleAugParams(rng, img.width, img.height, { hflipP: t % 2 ? 0.5 : 0 });
      const out1 = applyAug(img, a, 32);
      const back = parseAugParams(JSON.parse(JSON.stringify(a)));
      expect(back).toEqual(a);
      const out2 = applyAug(img, back, 32);
      expect(out2.width).toBe(32);
      expect(Buffer.from(out2.data).equals(Buffer.from(out1.data))).toBe(true);
      seen.add(Buffer.from(out1.data).toString('base64'));
    }
    expect(seen.size).toBeGreaterThan(30);
  });

  test('every op replays identically (all 14 ops, both signs)', () => {
    const img = testImage(50, 40);
    for (let op = 0; op < 14; op++)
      for (const s of [1, -1]) {
        const m = s * randAugMagnitude(op, 9, 31, 24).magnitude;
        const a: AugParams = [[3, 5, 30, 40], [[op, m], [13 - op, randAugMagnitude(13 - op).magnitude]]];
        const o1 = applyAug(img, a, { width: 24, height: 20 });
        const o2 = applyAug(img, JSON.parse(JSON.stringify(a)) as AugParams, { width: 24, height: 20 });
        expect(o1.height).toBe(20);
        expect(Buffer.from(o1.data).equals(Buffer.from(o2.data))).toBe(true);
      }
  });

  test('crop + resize without ops equals a crop when sizes match', () => {
    const img = testImage(30, 30);
    const out = applyAug(img, [[2, 3, 10, 10], null], 10);
    expect(px(out, 0, 0)).toEqual(px(img, 3, 2));
    const fl = applyAug(img, [[2, 3, 10, 10], null, { hflip: true }], 10);
    expect(px(fl, 9, 0)).toEqual(px(img, 3, 2));
  });

  test('bad records and boxes → MclipError', () => {
    const img = testImage(30, 30);
    expect(() => applyAug(img, [[20, 0, 20, 10], null], 8)).toThrow(/does not fit in the 30x30 image/);
    expect(() => parseAugParams([[0, 0, 1], null], 'x.paug.json record 3')).toThrow(/x\.paug\.json record 3: bad RRC box/);
    expect(() => parseAugParams([[0, 0, 1, 1], [[14, 0]]])).toThrow(/op index 14 out of range/);
    expect(() => parseAugParams('nope')).toThrow(MclipError);
    expect(() => applyAug({ data: new Uint8Array(5), width: 2, height: 2 }, [[0, 0, 1, 1], null])).toThrow(/expected an RGB HWC uint8 image/);
  });
});
