import { afterAll, beforeAll, expect, test } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initBackend } from '../../src/base/backend/index.js';
import { loadModel, type LoadedModel } from '../../src/base/model/checkpoint.js';
import { saveOpenClip } from '../../src/base/model/open-clip/save.js';
import { readSafetensors } from '../../src/base/io/safetensors.js';
import { loadTorchCheckpoint } from '../../src/base/io/torch-checkpoint.js';
import { tensorBytes, type StateDict } from '../../src/base/io/tensor-data.js';
import { fixture, describeFixtures } from '../paths.js';

const FILE = fixture('mobileclip2', 'mobileclip2_s0', 'open_clip_model_fp16.safetensors');

/** Keys whose bytes (or dtype, or shape) differ between two state dicts, plus keys only one has. */
function differences(a: StateDict, b: StateDict): string[] {
  const out: string[] = [];
  for (const [k, t] of a) {
    const u = b.get(k);
    if (!u) out.push(`${k} missing`);
    else if (u.dtype !== t.dtype || u.shape.join() !== t.shape.join() || Buffer.compare(Buffer.from(tensorBytes(t)), Buffer.from(tensorBytes(u))) !== 0) out.push(k);
  }
  for (const k of b.keys()) if (!a.has(k)) out.push(`${k} unexpected`);
  return out;
}

describeFixtures('open_clip layout: save round trip of the MobileCLIP2-S0 fixture', () => {
  let dir: string;
  let loaded: LoadedModel;
  let source: StateDict;

  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true, gradients: false });
    dir = mkdtempSync(join(tmpdir(), 'mclip-oc-rt-'));
    loaded = await loadModel(FILE);
    source = readSafetensors(FILE).tensors;
  });
  afterAll(() => {
    loaded?.model.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  test('safetensors: every tensor byte-identical (dtype, shape, bytes), the same key set', () => {
    const out = join(dir, 'rt.safetensors');
    saveOpenClip(loaded.model, out, { dtype: loaded.floatDType ?? 'float32' });
    const back = readSafetensors(out).tensors;
    expect(back.size).toBe(source.size);
    expect(differences(source, back)).toEqual([]);
  });

  test('--arch on an open_clip file: a named architecture it does not fit is a one-line error in open_clip names', async () => {
    await expect(loadModel(FILE, { arch: 'mobileclip2_s0' })).rejects.toThrow(
      /open_clip_model_fp16\.safetensors: open_clip checkpoint does not fit mobileclip2_s0: 120 missing \(text\.transformer\.resblocks\.2\.ln_1\.weight, /,
    );
    await expect(loadModel(FILE, { arch: 'mobileclip_s0' })).rejects.toThrow(/'text_encoder\.transformer\.0\.layer_scale' has no counterpart in open_clip's layout/);
  });

  test('torch .bin: the same tensors, and it loads back with no --arch', async () => {
    const out = join(dir, 'open_clip_pytorch_model.bin');
    saveOpenClip(loaded.model, out, { dtype: 'float16' });
    expect(differences(source, await loadTorchCheckpoint(out))).toEqual([]);
    const again = await loadModel(out);
    expect(again.config).toEqual(loaded.config);
    again.model.dispose();
  });
});
