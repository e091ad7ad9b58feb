import { describe, expect, test } from 'vitest';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { applyAug, type AugParams } from '../../src/base/data/augment.js';
import { readNpz } from '../../src/base/data/npz.js';

// Reference made with real Pillow 9.4 / numpy 1.24 by fixtures/make_pil_reference.py (np.savez_compressed).
const fx = (f: string): string => fileURLToPath(new URL(`./fixtures/${f}`, import.meta.url));
const ref = readNpz(readFileSync(fx('pil_reference.npz')), 'pil_reference.npz');
const records = JSON.parse(readFileSync(fx('pil_reference.json'), 'utf8')) as AugParams[];

describe('replay vs Pillow (torchvision semantics)', () => {
  test('numpy-written npz loads', () => {
    expect(ref.get('image')!.shape).toEqual([47, 61, 3]);
    expect(ref.get('out')!.shape).toEqual([records.length, 24, 24, 3]);
  });

  test('per-record pixel agreement', () => {
    const img = { data: ref.get('image')!.data as Uint8Array, width: 61, height: 47 };
    const out = ref.get('out')!.data as Uint8Array;
    const n = 24 * 24 * 3;
    const rows: string[] = [];
    let exact = 0;
    for (let r = 0; r < records.length; r++) {
      const got = applyAug(img, records[r], 24).data;
      const want = out.subarray(r * n, (r + 1) * n);
      let diff = 0;
      let maxd = 0;
      for (let i = 0; i < n; i++) {
        const d = Math.abs(got[i] - want[i]);
        if (d) diff++;
        if (d > maxd) maxd = d;
      }
      if (diff === 0) exact++;
      if (diff) rows.push(`${JSON.stringify(records[r])}: ${diff} differing bytes, max |d| ${maxd}`);
    }
    expect(rows).toEqual([]);
    expect(exact).toBe(records.length);
  });
});
