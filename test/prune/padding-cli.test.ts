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
  const deep = join(tmp.dir, 'micro-base-2.safetensors');
  const inputs = join(tmp.dir, 'tokens.safetensors');
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true, gradients: false });
    // Two text layers, so tokens reduced after layer 0 reach layer 1 (after the last layer they change nothing).
    const twoLayers = microConfig('mobileclip_tiny_base');
    twoLayers.text = { ...twoLayers.text, nTransformerLayers: 2 };
    for (const [cfg, path] of [[microConfig('mobileclip_tiny_base'), ckpt], [microConfig('mobileclip_tiny'), mct], [twoLayers, deep]] as const) {
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
    expectOneLineError(expect, r, /--text-padding: expected one of as-trained, truncate, pads-first, merge-pads, got 'trim' \(see mclip embed --help\)$/, 2);
  });

  it('--prune-layers / --keep and --merge-layers / --merge reach the text tower; keep 1 and merge 0 change nothing', async () => {
    const run = async (name: string, flags: string[]) => {
      const out = join(tmp.dir, `out-${name}.safetensors`);
      const r = await runMain(['embed', '--checkpoint', deep, '--inputs', inputs, '--out', out, ...flags]);
      expect(r.status, show(r)).toBe(0);
      const f = readSafetensors(out);
      return { features: toFloat32(f.tensors.get('text_features')!), tokens: f.metadata.text_tokens };
    };
    const ref = await run('ref', []);
    expect(ref.tokens).toBe('as-trained');
    expect((await run('keep1', ['--prune-layers', '0', '--keep', '1'])).features).toEqual(ref.features);
    expect((await run('merge0', ['--merge-layers', '0', '--merge', '0'])).features).toEqual(ref.features);
    const pruned = await run('pruned', ['--text-padding', 'truncate', '--prune-layers', '0', '--keep', '0.5']);
    expect(pruned.tokens).toBe('--text-padding truncate --prune-layers 0 --keep 0.5');
    expect(relErr(ref.features, pruned.features)).toBeGreaterThan(1e-4);
    const merged = await run('merged', ['--merge-layers', '0', '--merge', '2']);
    expect(relErr(ref.features, merged.features)).toBeGreaterThan(1e-4);
  });
});
