/**
 * `mclip embed --images … [--texts …]`: PNGs written from the fixture's `image_u8` (256×256, so the resize is the
 * identity and the pixels equal the fixture's `image` input).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

import sharp from 'sharp';
import { afterAll, beforeAll, expect, it } from 'vitest';

import { readSafetensors } from '../../src/base/io/safetensors.js';
import { toFloat32 } from '../../src/base/io/tensor-data.js';
import { fixture, describeFixtures } from '../paths.js';
import { errorLines, runCli, show, STACK_FRAME, syntheticCorpus, tempDir, type CliResult } from './helpers.js';

describeFixtures('mclip embed --images / --texts', () => {
  const S0 = (f: string) => fixture('mobileclip_s0', f);
  const tmp = tempDir('files');
  const pngs = [join(tmp.dir, 'a.png'), join(tmp.dir, 'b.png')];
  const vocab1024 = join(tmp.dir, 'v1024');
  const base = ['embed', '--arch', 'mobileclip_s0', '--checkpoint', S0('model_fp16.pt')];
  let imagesOnly: CliResult;
  let realVocab: CliResult;
  let trained: CliResult;
  let refCos = NaN;
  let refScale = NaN;

  beforeAll(async () => {
    const inputs = readSafetensors(S0('inputs.safetensors')).tensors;
    const u8 = inputs.get('image_u8')!;
    expect(u8.shape).toEqual([2, 256, 256, 3]);
    const px = u8.data as Uint8Array;
    for (let i = 0; i < 2; i++) {
      const raw = Buffer.from(px.buffer, px.byteOffset + i * 256 * 256 * 3, 256 * 256 * 3);
      await sharp(raw, { raw: { width: 256, height: 256, channels: 3 } }).png().toFile(pngs[i]);
    }
    const ref = readSafetensors(S0('outputs_unfused.safetensors')).tensors;
    const n = toFloat32(ref.get('image.embed_norm')!);
    refCos = 0;
    for (let k = 0; k < 512; k++) refCos += n[k] * n[512 + k];
    refScale = toFloat32(ref.get('logit_scale_exp')!)[0];

    // A trained vocab of 1024 ids fits the fixture's cut text tower (SOT 1022, EOT 1023 = its vocab-2 / vocab-1).
    const corpus = join(tmp.dir, 'corpus.txt');
    writeFileSync(corpus, syntheticCorpus().join('\n'));
    const v = await runCli(['vocab', 'train', '--texts', corpus, '--size', '1024', '--out', vocab1024]);
    expect(v.status, show(v)).toBe(0);
    expect(JSON.parse(v.stdout).size).toBe(1024);

    [imagesOnly, realVocab, trained] = await Promise.all([
      runCli([...base, '--images', ...pngs, '--json']),
      // the real CLIP vocab (49408 ids) does not fit the fixture's 1024-id text tower
      runCli([...base, '--texts', 'x', 'y', '--vocab', fixture('tokenizer'), '--json']),
      runCli([...base, '--images', ...pngs, '--texts', 'a photo of a dog', 'a red house', '--vocab', vocab1024, '--json']),
    ]);
  });
  afterAll(() => tmp.cleanup());

  it('--images alone prints a 2×2 cosine matrix: 1 on the diagonal, the reference cosine off it', () => {
    expect(imagesOnly.status, show(imagesOnly)).toBe(0);
    const o = JSON.parse(imagesOnly.stdout) as { items: string[]; cosine: number[][] };
    expect(o.items).toEqual(pngs);
    expect(o.cosine).toHaveLength(2);
    expect(o.cosine.every((row) => row.length === 2)).toBe(true);
    expect(o.cosine[0][0]).toBeCloseTo(1, 5);
    expect(o.cosine[1][1]).toBeCloseTo(1, 5);
    expect(o.cosine[0][1]).toBeCloseTo(o.cosine[1][0], 6);
    expect(Math.abs(refCos)).toBeLessThan(0.95); // the check below can tell the images apart
    expect(Math.abs(o.cosine[0][1] - refCos)).toBeLessThan(1e-4);
  });

  it('--images + --texts with a vocab that fits: cosine in [-1,1], probs = softmax(logit_scale·cos)', () => {
    expect(trained.status, show(trained)).toBe(0);
    const o = JSON.parse(trained.stdout) as { images: string[]; texts: string[]; cosine: number[][]; probs: number[][] };
    expect(o.images).toEqual(pngs);
    expect(o.texts).toEqual(['a photo of a dog', 'a red house']);
    expect(o.cosine.map((r) => r.length)).toEqual([2, 2]);
    for (let i = 0; i < 2; i++) {
      for (const c of o.cosine[i]) expect(Math.abs(c)).toBeLessThanOrEqual(1 + 1e-6);
      const e = o.cosine[i].map((c) => Math.exp(refScale * c));
      const s = e[0] + e[1];
      expect(o.probs[i][0]).toBeCloseTo(e[0] / s, 4);
      expect(o.probs[i][1]).toBeCloseTo(e[1] / s, 4);
    }
    // different texts give different similarities
    expect(Math.abs(o.cosine[0][0] - o.cosine[0][1])).toBeGreaterThan(1e-4);
  });

  it('--texts with a tokenizer larger than the text tower: one-line MclipError naming both sizes, exit 1', () => {
    const r = realVocab;
    expect(r.status, show(r)).toBe(1);
    expect(r.signal).toBeNull();
    expect(r.stdout).toBe('');
    const lines = errorLines(r.stderr);
    expect(lines, show(r)).toHaveLength(1);
    // (was "mclip: internal error: GatherV2: the index value 49406 is not in [0, 1023]" before the size check)
    expect(lines[0]).toMatch(/^mclip: error: /);
    expect(lines[0]).toMatch(/\b49408\b.*\b1024\b/);
    expect(r.stderr).not.toMatch(STACK_FRAME);
  });
});
