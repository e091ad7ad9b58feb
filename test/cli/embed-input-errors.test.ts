/**
 * Bad `--inputs` tensors: these are checked against the model's config, so each run loads the S0 checkpoint
 * (a few seconds each on wasm); the runs go in parallel. Each case costs one model load, so only two are here
 * (the [N,4,H,W] channel check sits next to the H×W check in the same function).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { afterAll, it } from 'vitest';

import { writeSafetensors } from '../../src/base/io/safetensors.js';
import type { TensorData } from '../../src/base/io/tensor-data.js';
import { fixture, describeFixtures } from '../paths.js';
import { expectOneLineError, runCli, tempDir } from './helpers.js';

describeFixtures('mclip embed: invalid input tensors', { concurrent: true }, () => {
  const tmp = tempDir('inputs');
  afterAll(() => tmp.cleanup());
  const out = join(tmp.dir, 'never-written.safetensors');

  const file = (name: string, t: TensorData): string => {
    const p = join(tmp.dir, `${name}.safetensors`);
    writeSafetensors(p, new Map([[t.shape.length === 4 ? 'image' : 'tokens', t]]));
    return p;
  };
  const zeros = (shape: number[]) => new Float32Array(shape.reduce((a, b) => a * b, 1));
  const embed = (inputs: string) => [
    'embed', '--arch', 'mobileclip_s0', '--checkpoint', fixture('mobileclip_s0', 'model_fp16.pt'), '--inputs', inputs, '--out', out,
  ];

  it('image 100×100 (not a multiple of 32)', async ({ expect }) => {
    const p = file('img100', { dtype: 'float32', shape: [2, 3, 100, 100], data: zeros([2, 3, 100, 100]) });
    const r = await runCli(embed(p));
    expectOneLineError(expect, r, /img100\.safetensors: 'image' H and W must be positive multiples of 32 .*got 100×100/);
    expect(existsSync(out)).toBe(false);
  });

  it('tokens of the wrong length [3,50]', async ({ expect }) => {
    const p = file('tok50', { dtype: 'int32', shape: [3, 50], data: new Int32Array(150) });
    const r = await runCli(embed(p));
    expectOneLineError(expect, r, /tok50\.safetensors: 'tokens' must have shape \[N, 77\], got \[3, 50\]$/);
  });
});
