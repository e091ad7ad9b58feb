import { join } from 'node:path';

import { afterAll, beforeAll, expect, it } from 'vitest';

import { readSafetensors } from '../../src/base/io/safetensors.js';
import { toFloat32 } from '../../src/base/io/tensor-data.js';
import { fixture, describeFixtures } from '../paths.js';
import { errorLines, runCli, show, tempDir, type CliResult } from './helpers.js';
import { relErr } from '../model/helpers.js';

const TOL = 1e-4;

describeFixtures('mclip embed --inputs (S0 fixture, wasm)', () => {
  const S0 = (f: string) => fixture('mobileclip_s0', f);
  const tmp = tempDir('embed');
  const outUnfused = join(tmp.dir, 'out.safetensors');
  const outFused = join(tmp.dir, 'out_fused.safetensors');
  const base = ['embed', '--arch', 'mobileclip_s0', '--checkpoint', S0('model_fp16.pt'), '--inputs', S0('inputs.safetensors')];
  let unfused: CliResult;
  let fused: CliResult;

  beforeAll(async () => {
    // the two slow runs at once
    [unfused, fused] = await Promise.all([
      runCli([...base, '--out', outUnfused]),
      runCli([...base, '--out', outFused, '--fused', '--batch', '1']),
    ]);
  });
  afterAll(() => tmp.cleanup());

  for (const which of ['unfused', 'fused'] as const) {
    it(`${which}: features match outputs_${which}.safetensors image.embed / text.embed (rel ≤ ${TOL})`, () => {
      const r = which === 'fused' ? fused : unfused;
      const path = which === 'fused' ? outFused : outUnfused;
      expect(r.status, show(r)).toBe(0);
      expect(r.stdout).toBe('');
      expect(errorLines(r.stderr)).toContain(`mclip: wrote image_features, text_features to ${path}`);

      const got = readSafetensors(path);
      expect([...got.tensors.keys()].sort()).toEqual(['image_features', 'text_features']);
      expect(got.metadata.fused).toBe(String(which === 'fused'));
      const ref = readSafetensors(S0(`outputs_${which}.safetensors`)).tensors;
      const img = got.tensors.get('image_features')!;
      const txt = got.tensors.get('text_features')!;
      expect(img.dtype).toBe('float32');
      expect(img.shape).toEqual([2, 512]);
      expect(txt.dtype).toBe('float32');
      expect(txt.shape).toEqual([3, 512]);
      expect(relErr(toFloat32(ref.get('image.embed')!), toFloat32(img))).toBeLessThanOrEqual(TOL);
      expect(relErr(toFloat32(ref.get('text.embed')!), toFloat32(txt))).toBeLessThanOrEqual(TOL);
      // and the rows are not trivially alike (a swapped or repeated row would fail the comparison above)
      const f = toFloat32(img);
      expect(relErr(f.subarray(0, 512), f.subarray(512))).toBeGreaterThan(0.1);
    });
  }
});
