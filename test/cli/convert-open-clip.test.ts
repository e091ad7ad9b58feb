import { join } from 'node:path';

import { afterAll, expect, test } from 'vitest';

import { readSafetensors } from '../../src/base/io/safetensors.js';
import { tensorBytes } from '../../src/base/io/tensor-data.js';
import { fixture, describeFixtures } from '../paths.js';
import { show, tempDir } from './helpers.js';
import { runMain } from './in-process.js';

const SRC = fixture('mobileclip2', 'mobileclip2_s0', 'open_clip_model_fp16.safetensors');

describeFixtures('mclip convert --to open_clip (MobileCLIP2-S0 fixture)', () => {
  const tmp = tempDir('convert-oc');
  afterAll(() => tmp.cleanup());

  test('the fixture loaded as a model and written in open_clip layout: every tensor byte-identical (its float16 kept); a wrong --out extension is a usage error', async () => {
    const back = join(tmp.dir, 'open_clip.safetensors');
    const a = await runMain(['--quiet', 'convert', SRC, '--to', 'open_clip', '--out', back]);
    expect(a.status, show(a)).toBe(0);
    const src = readSafetensors(SRC).tensors;
    const got = readSafetensors(back).tensors;
    expect([...got.keys()].sort()).toEqual([...src.keys()].sort());
    const differ = [...src].filter(([k, t]) => {
      const u = got.get(k)!;
      return u.dtype !== t.dtype || Buffer.compare(Buffer.from(tensorBytes(t)), Buffer.from(tensorBytes(u))) !== 0;
    });
    expect(differ.map(([k]) => k)).toEqual([]);
    const bad = await runMain(['convert', SRC, '--to', 'open_clip', '--out', join(tmp.dir, 'x.onnx')]);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/--to open_clip: --out must name a \.safetensors or \.bin or \.pt or \.pth file/);
  });
});
