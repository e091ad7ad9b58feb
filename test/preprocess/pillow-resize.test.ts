import { createHash } from 'node:crypto';

import { describe, expect, it } from 'vitest';

import { resizeBilinearPillow } from '../../src/base/preprocess/pillow-resize.js';

/**
 * SHA-256 of Pillow's `Image.fromarray(img).resize((ow, oh), Image.BILINEAR)` output (Pillow 11.3.0, whose
 * 8-bit Resample.c code is unchanged since 9.4.0) for the synthetic image `make(w, h)` below, covering
 * antialiased downscaling (the official fixture only upscales), upscaling and one-axis-only resizes.
 */
const PILLOW: { w: number; h: number; ow: number; oh: number; inputSha256: string; sha256: string }[] = [
  { w: 300, h: 200, ow: 37, oh: 25, inputSha256: '5679a60b8a3900821d242543b2739fae07f6b49e8eb487cb4c591be5a54d1b4f', sha256: 'e3e06d775c4c9a058bcf3ac0433479fa488b2b16f4887c8691dcaadd3903f9b9' },
  { w: 123, h: 457, ow: 64, oh: 238, inputSha256: 'e508aefaac756be025919a03af05e4dcf942c8631efb9af8c52ecbf4c6872d61', sha256: '4d1d8979abc5d5a65e8f507b246b8f294a8d5411091aa667fbd9248b695076e1' },
  { w: 640, h: 480, ow: 341, oh: 256, inputSha256: '914a540ebe7ec674bf3c5ce9acc4864e6dfa89489c98d0885b6372b19c872601', sha256: 'dad9dc47488779d2327bc248ba3fabdb869e2b2771f4b2a2d3da8190afcbd313' },
  { w: 1001, h: 999, ow: 257, oh: 256, inputSha256: 'b8ec0ed19eabe7efec45af575ae31a8d68e85a758e6c906fa84a64b413276b98', sha256: '01974929e5f0b37f8b2601d6907860374742c766efe828ec5a61ef72ee4b8e41' },
  { w: 50, h: 40, ow: 256, oh: 204, inputSha256: '482baab5e3ea7e02aa660ee453705506e1265a490c0ef8ada6dddc5856436ce0', sha256: '684ccb9d6c810115a0053754147160f382ff6114ee685a02a224dc218df86d5a' },
  { w: 97, h: 61, ow: 13, oh: 61, inputSha256: '80ba8ec4468c2af57623e319c66f1411ffdb49bdff62f3a08a48a447c28f0502', sha256: '78654853f48f2fa4e8656eef3e171f754a8e449b4fbed2e11f840cb1ddcd45e5' },
];

/** Same formula as the generator (numpy int64; only the low 16 bits of the hash are used, so int32 is fine). */
function make(w: number, h: number): Uint8Array {
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let c = 0; c < 3; c++) {
        let v = (x * 7 + y * 13 + c * 29 + ((x * y) % 17) * 11) & 255;
        const hsh = ((x * 73856093) ^ (y * 19349663) ^ (c * 83492791)) & 0xffff;
        if (hsh % 5 === 0) v = hsh & 255;
        out[(y * w + x) * 3 + c] = v;
      }
    }
  }
  return out;
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

describe('resizeBilinearPillow is bit-exact with Pillow BILINEAR', () => {
  for (const r of PILLOW) {
    it(`${r.w}x${r.h} -> ${r.ow}x${r.oh}`, () => {
      const data = make(r.w, r.h);
      expect(sha256(data)).toBe(r.inputSha256);
      const out = resizeBilinearPillow({ data, width: r.w, height: r.h, channels: 3 }, r.ow, r.oh);
      expect([out.width, out.height, out.channels]).toEqual([r.ow, r.oh, 3]);
      expect(sha256(out.data)).toBe(r.sha256);
    });
  }
});
