/**
 * `mclip embed --text-padding`: the policy reaches the text tower of a saved (micro, causal) checkpoint —
 * `truncate` and `merge-pads` give the `as-trained` features ≤ 1e-5 there — and a wrong name is a usage error.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { CLIP } from '../../src/base/model/clip.js';
import { saveModel } from '../../src/base/model/checkpoint.js';
import { readSafetensors, writeSafetensors } from '../../src/base/io/safetensors.js';
import { toFloat32 } from '../../src/base/io/tensor-data.js';
import { MICRO_CONTEXT, microConfig, microTokenRows } from '../micro-config.js';
import { relErr } from '../model/helpers.js';
import { expectOneLineError, show, tempDir } from '../cli/helpers.js';
import { runMain } from '../cli/in-process.js';

describe('mclip embed --text-padding', () => {
  const tmp = tempDir('text-padding');
  afterAll(() => tmp.cleanup());
  const ckpt = join(tmp.dir, 'micro-base.safetensors');
  const mct = join(tmp.dir, 'micro-mct.safetensors');
  const inputs = join(tmp.dir, 'tokens.safetensors');
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true, gradients: false });
    for (const [cfg, path] of [[microConfig('mobileclip_tiny_base'), ckpt], [microConfig('mobileclip_tiny'), mct]] as const) {
      const model = new CLIP(cfg, { seed: 2 });
      saveModel(model, path);
      model.dispose();
    }
    const rows = microTokenRows();
    writeSafetensors(inputs, new Map([['tokens', { dtype: 'int32', shape: [4, MICRO_CONTEXT], data: Int32Array.from(rows.dataSync()) }]]));
    rows.dispose();
  });

  const embed = async (policy: string | null, model = ckpt): Promise<Float32Array> => {
    const out = join(tmp.dir, `out-${policy ?? 'default'}.safetensors`);
    const r = await runMain(['embed', '--checkpoint', model, '--inputs', inputs, '--out', out, ...(policy ? ['--text-padding', policy] : [])]);
    expect(r.status, show(r)).toBe(0);
    const f = readSafetensors(out);
    expect(f.metadata.text_padding).toBe(policy ?? 'as-trained');
    return toFloat32(f.tensors.get('text_features')!);
  };

  it('truncate and merge-pads equal as-trained on a causal tower, truncate changes an mct tower; the policy is recorded in the output', async () => {
    const ref = await embed(null);
    expect(await embed('as-trained')).toEqual(ref);
    expect(relErr(ref, await embed('truncate'))).toBeLessThanOrEqual(1e-5);
    expect(relErr(ref, await embed('merge-pads'))).toBeLessThanOrEqual(1e-5);
    // On the non-causal mct tower the option visibly changes the features (truncate is approximate there).
    expect(relErr(await embed(null, mct), await embed('truncate', mct))).toBeGreaterThan(1e-4);
  });

  it('an unknown policy is a usage error naming the choices', async ({ expect }) => {
    const r = await runMain(['embed', '--checkpoint', ckpt, '--inputs', inputs, '--out', join(tmp.dir, 'never.safetensors'), '--text-padding', 'trim']);
    expectOneLineError(expect, r, /--text-padding: unknown policy 'trim' \(choices: as-trained, truncate, pads-first, merge-pads\) \(see mclip embed --help\)$/, 2);
  });
});
