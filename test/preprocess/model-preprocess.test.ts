import { describe, expect, test } from 'vitest';
import { getConfig } from '../../src/base/model/configs.js';
import { preprocessFor } from '../../src/base/model/preprocess-table.js';
import { resizeBicubicPillow, type U8Image } from '../../src/base/preprocess/pillow-resize.js';
import { IDENTITY_PREPROCESS, OPENAI_MEAN, OPENAI_STD, transformRgb, centerCropOffsets, resizedSize } from '../../src/base/preprocess/index.js';

function image(w: number, h: number): U8Image {
  const data = new Uint8Array(w * h * 3);
  for (let i = 0; i < data.length; i++) data[i] = (i * 37 + (i >> 5) * 11) % 256;
  return { width: w, height: h, channels: 3, data };
}

describe("per-model preprocessing (open_clip's pretrained table)", () => {
  test('S0 / S2 / B and MobileCLIP v1: mean 0, std 1, bilinear; S3 / S4: OpenAI mean / std, bilinear; L-14: bicubic', () => {
    for (const n of ['mobileclip2_s0', 'mobileclip2_s2', 'mobileclip2_b', 'mobileclip_s0', 'mobileclip_b']) expect(preprocessFor(getConfig(n)), n).toEqual(IDENTITY_PREPROCESS);
    for (const n of ['mobileclip2_s3', 'mobileclip2_s4']) expect(preprocessFor(getConfig(n)), n).toEqual({ mean: OPENAI_MEAN, std: OPENAI_STD, interpolation: 'bilinear' });
    expect(preprocessFor(getConfig('mobileclip2_l14'))).toEqual({ mean: OPENAI_MEAN, std: OPENAI_STD, interpolation: 'bicubic' });
  });

  test('normalisation: (x − mean) / std per channel after ToTensor; bicubic: Pillow bicubic shortest-side resize then the centre crop', () => {
    const img = image(37, 29);
    const size = 16;
    const plain = transformRgb(img, size);
    const norm = transformRgb(img, size, undefined, 0, { mean: OPENAI_MEAN, std: OPENAI_STD, interpolation: 'bilinear' });
    const plane = size * size;
    let worst = 0;
    for (let i = 0; i < plain.length; i++) {
      const c = Math.floor(i / plane);
      worst = Math.max(worst, Math.abs(norm[i] - (plain[i] - OPENAI_MEAN[c]) / OPENAI_STD[c]));
    }
    expect(worst).toBeLessThan(1e-6);

    const cubic = transformRgb(img, size, undefined, 0, { ...IDENTITY_PREPROCESS, interpolation: 'bicubic' });
    const [rw, rh] = resizedSize(img.width, img.height, size);
    const r = resizeBicubicPillow(img, rw, rh);
    const [top, left] = centerCropOffsets(rw, rh, size);
    for (let c = 0; c < 3; c++) for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) {
      expect(cubic[c * plane + y * size + x]).toBe(Math.fround(r.data[((y + top) * rw + left + x) * 3 + c] / 255));
    }
    expect(cubic).not.toEqual(plain);
  });
});
