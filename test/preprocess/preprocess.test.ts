import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import sharp from 'sharp';
import { describe, expect, it } from 'vitest';

import { MclipError } from '../../src/errors.js';
import {
  centerCropOffsets,
  preprocessBatch,
  preprocessImage,
  resizedSize,
  resizeBilinearPillow,
} from '../../src/base/preprocess/index.js';
import { HAVE_FIXTURES, fixture, describeFixtures } from '../paths.js';

/** Minimal safetensors reader (U8 / F32 only), local to this test on purpose. */
function readSafetensors(path: string): Map<string, { dtype: string; shape: number[]; data: Uint8Array | Float32Array }> {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<
    string,
    { dtype: string; shape: number[]; data_offsets: [number, number] }
  >;
  const base = 8 + n;
  const out = new Map<string, { dtype: string; shape: number[]; data: Uint8Array | Float32Array }>();
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [b, e] = t.data_offsets;
    const bytes = buf.subarray(base + b, base + e);
    let data: Uint8Array | Float32Array;
    if (t.dtype === 'U8') data = new Uint8Array(bytes);
    else if (t.dtype === 'F32') {
      const copy = new Uint8Array(bytes); // aligned copy
      data = new Float32Array(copy.buffer, 0, copy.length / 4);
    } else throw new Error(`unsupported dtype ${t.dtype}`);
    out.set(name, { dtype: t.dtype, shape: t.shape, data });
  }
  return out;
}

describeFixtures('official MobileCLIP preprocessing (fixture)', () => {
  const tensors = HAVE_FIXTURES ? readSafetensors(fixture('preprocess', 'preprocess.safetensors')) : new Map();

  for (const name of ['landscape_320x240', 'portrait_200x300']) {
    it(`${name}: matches the official transform`, async () => {
      const input = tensors.get(`${name}.input_u8`)!;
      const want = tensors.get(`${name}.output`)!.data as Float32Array;
      const [h, w, c] = input.shape;
      const got = await preprocessImage({ data: input.data as Uint8Array, width: w, height: h, channels: c }, 256);
      expect(got.length).toBe(want.length);
      let sum = 0;
      let max = 0;
      let exact = 0;
      for (let i = 0; i < want.length; i++) {
        const d = Math.abs(got[i] - want[i]);
        sum += d;
        if (d > max) max = d;
        if (got[i] === want[i]) exact++;
      }
      const mean = sum / want.length;
      console.log(
        `[preprocess] ${name}: mean|Δ|=${mean.toExponential(3)} (${(mean * 255).toFixed(4)}/255) ` +
          `max|Δ|=${max.toExponential(3)} (${(max * 255).toFixed(2)}/255) bit-exact ${exact}/${want.length}`,
      );
      expect(mean).toBeLessThanOrEqual(1 / 255);
      expect(max).toBeLessThanOrEqual(8 / 255);
    });
  }

  it('sizes and crop offsets follow torchvision', () => {
    expect(resizedSize(320, 240, 256)).toEqual([341, 256]);
    expect(resizedSize(200, 300, 256)).toEqual([256, 384]);
    expect(centerCropOffsets(341, 256, 256)).toEqual([0, 42]); // 42.5 -> 42 (half to even)
    expect(centerCropOffsets(256, 384, 256)).toEqual([64, 0]);
    expect(centerCropOffsets(343, 256, 256)).toEqual([0, 44]); // 43.5 -> 44
  });
});

describe('preprocessImage on encoded files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mclip-pre-'));

  it('decodes PNG files and buffers; raw and encoded inputs agree', async () => {
    const w = 97, h = 61;
    const rgb = new Uint8Array(w * h * 3);
    for (let i = 0; i < rgb.length; i++) rgb[i] = (i * 37 + (i >> 5)) & 255;
    const png = await sharp(rgb, { raw: { width: w, height: h, channels: 3 } }).png().toBuffer();
    const file = join(dir, 'a.png');
    writeFileSync(file, png);
    const fromRaw = await preprocessImage({ data: rgb, width: w, height: h, channels: 3 }, 64);
    const fromFile = await preprocessImage(file, 64);
    const fromBuf = await preprocessImage(png, 64);
    expect(fromFile).toEqual(fromRaw);
    expect(fromBuf).toEqual(fromRaw);
    expect(fromRaw.length).toBe(3 * 64 * 64);
  });

  it('grayscale is replicated and alpha is dropped (like PIL convert("RGB"))', async () => {
    const w = 40, h = 50;
    const gray = new Uint8Array(w * h).map((_, i) => (i * 7) & 255);
    const grayPng = await sharp(gray, { raw: { width: w, height: h, channels: 1 } }).png().toBuffer();
    const out = await preprocessImage(grayPng, 32);
    const plane = 32 * 32;
    for (let i = 0; i < plane; i++) {
      expect(out[i]).toBe(out[plane + i]);
      expect(out[i]).toBe(out[2 * plane + i]);
    }
    const rgba = new Uint8Array(w * h * 4).map((_, i) => (i % 4 === 3 ? 0 : (i * 13) & 255));
    const rgbaPng = await sharp(rgba, { raw: { width: w, height: h, channels: 4 } }).png().toBuffer();
    const rgb = new Uint8Array(w * h * 3);
    for (let p = 0; p < w * h; p++) for (let c = 0; c < 3; c++) rgb[p * 3 + c] = rgba[p * 4 + c];
    expect(await preprocessImage(rgbaPng, 32)).toEqual(await preprocessImage({ data: rgb, width: w, height: h, channels: 3 }, 32));
  });

  it('batches in order', async () => {
    const imgs = [0, 1, 2].map((k) => ({
      data: new Uint8Array(30 * 20 * 3).map((_, i) => (i * (k + 3)) & 255),
      width: 30,
      height: 20,
      channels: 3,
    }));
    const batch = await preprocessBatch(imgs, 16, 2);
    expect(batch.shape).toEqual([3, 3, 16, 16]);
    for (let k = 0; k < 3; k++) {
      expect(batch.data.subarray(k * 768, (k + 1) * 768)).toEqual(await preprocessImage(imgs[k], 16));
    }
  });

  it('a non-image file gives a one-line MclipError naming the file', async () => {
    const file = join(dir, 'notes.txt');
    writeFileSync(file, 'this is not an image\n');
    const err = await preprocessImage(file, 32).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MclipError);
    const msg = (err as Error).message;
    expect(msg).toContain(file);
    expect(msg).not.toContain('\n');
    const missing = await preprocessImage(join(dir, 'nope.jpg'), 32).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(MclipError);
    expect((missing as Error).message).toContain('nope.jpg');
  });

  it('resize is the identity at the same size and averages a constant image to itself', () => {
    const img = { data: new Uint8Array(9 * 7 * 3).fill(200), width: 9, height: 7, channels: 3 };
    expect(resizeBilinearPillow(img, 9, 7).data).toEqual(img.data);
    const down = resizeBilinearPillow(img, 4, 3);
    expect(Array.from(new Set(down.data))).toEqual([200]);
    const up = resizeBilinearPillow(img, 20, 15);
    expect(Array.from(new Set(up.data))).toEqual([200]);
  });
});
