/**
 * `mclip convert` (issue 10, item 4 "Continue in PyTorch"): an mclip checkpoint becomes a `torch.save`-style
 * `.pt` with the official keys (float32, or float16 with --dtype; int64 stays), and a `.pt` becomes safetensors
 * again, both at the state-dict level and bit for bit. The S0 fixture goes .pt → safetensors → .pt unchanged.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { initBackend } from '../../src/base/backend/index.js';
import { readSafetensors } from '../../src/base/io/safetensors.js';
import { encodeFloat16, tensorBytes, type StateDict, type TensorData } from '../../src/base/io/tensor-data.js';
import { loadTorchCheckpoint } from '../../src/base/io/torch-checkpoint.js';
import { CLIP } from '../../src/base/model/clip.js';
import { saveModel } from '../../src/base/model/checkpoint.js';
import { microConfig } from '../micro-config.js';
import { describeFixtures, fixture } from '../paths.js';
import { expectOneLineError, show, tempDir } from './helpers.js';
import { runMain } from './in-process.js';

function expectSame(got: StateDict, want: StateDict, opts: { order?: boolean } = {}): void {
  if (opts.order !== false) expect([...got.keys()]).toEqual([...want.keys()]);
  else expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
  for (const [k, w] of want) {
    const g = got.get(k) as TensorData;
    expect({ k, dtype: g.dtype, shape: g.shape }).toEqual({ k, dtype: w.dtype, shape: w.shape });
    expect(Buffer.from(tensorBytes(g)).equals(Buffer.from(tensorBytes(w))), k).toBe(true);
  }
}

describe('mclip convert', () => {
  const tmp = tempDir('convert');
  afterAll(() => tmp.cleanup());
  const micro = join(tmp.dir, 'micro.safetensors');
  let source: StateDict;
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true, gradients: false });
    const model = new CLIP(microConfig(), { seed: 3 });
    saveModel(model, micro);
    model.dispose();
    source = readSafetensors(micro).tensors;
  });

  it('--to pt writes the official keys, dtypes and values; --to safetensors brings them back', async () => {
    const pt = join(tmp.dir, 'micro.pt');
    const r = await runMain(['convert', micro, '--to', 'pt', '--out', pt]);
    expect(r.status, show(r)).toBe(0);
    expect(r.stdout).toBe(`${pt}: 327 tensors: int64 45, float32 282\n`);
    expect(r.stderr).toMatch(/^mclip: wrote .*micro\.pt \(PyTorch state dict for torch\.load \+ load_state_dict; unfused; 1\.0 MiB\)\n$/);
    const loaded = await loadTorchCheckpoint(pt, { verifyChecksums: true });
    expectSame(loaded, source);
    expect([...loaded.keys()].filter((k) => k.endsWith('num_batches_tracked'))).toHaveLength(45);

    const back = join(tmp.dir, 'back.safetensors');
    const b = await runMain(['--quiet', 'convert', pt, '--to', 'safetensors', '--out', back]);
    expect(b.status, show(b)).toBe(0);
    expect(b.stderr).toBe('');
    const file = readSafetensors(back);
    expectSame(file.tensors, source, { order: false }); // safetensors orders by item size
    expect(file.metadata).toEqual({ 'mclip.converted_from': 'micro.pt', 'mclip.fused': 'false' }); // a .pt has no config
    // safetensors → safetensors keeps the stored config
    const again = join(tmp.dir, 'again.safetensors');
    expect((await runMain(['convert', micro, '--to', 'safetensors', '--out', again])).status).toBe(0);
    expect(JSON.parse(readSafetensors(again).metadata['mclip.config'] ?? '{}').name).toBe('mobileclip_tiny_micro');
  });

  it('--dtype float16 rounds every float tensor to nearest even and keeps int64; --dtype float32 decodes exactly', async () => {
    const half = join(tmp.dir, 'half.pt');
    const r = await runMain(['--quiet', 'convert', micro, '--to', 'pt', '--out', half, '--dtype', 'float16']);
    expect(r.status, show(r)).toBe(0);
    expect(r.stdout).toBe(`${half}: 327 tensors: int64 45, float16 282\n`);
    const sd = await loadTorchCheckpoint(half);
    const w = 'text_encoder.projection_layer';
    expect(sd.get(w)?.dtype).toBe('float16');
    expect(sd.get(w)?.data).toEqual(encodeFloat16(source.get(w)?.data as Float32Array));
    for (const [k, t] of sd) expect(t.dtype, k).toBe(k.endsWith('num_batches_tracked') ? 'int64' : 'float16');
    const full = join(tmp.dir, 'full.safetensors');
    expect((await runMain(['--quiet', 'convert', half, '--to', 'safetensors', '--out', full, '--dtype', 'float32'])).status).toBe(0);
    const f = readSafetensors(full).tensors;
    expect(f.get(w)?.dtype).toBe('float32');
    const bits = sd.get(w)?.data as Uint16Array;
    expect(encodeFloat16(f.get(w)?.data as Float32Array)).toEqual(bits);
  });

  it('one-line errors: unknown --to, --out with the wrong extension, bad --dtype, missing file, missing --to', async ({ expect }) => {
    const out = join(tmp.dir, 'err');
    expectOneLineError(expect, await runMain(['convert', micro, '--to', 'onnx', '--out', `${out}.pt`]), /^mclip: usage error: --to must be one of pt, safetensors, open_clip, got 'onnx' \(see mclip convert --help\)$/, 2);
    expectOneLineError(expect, await runMain(['convert', micro, '--to', 'pt', '--out', `${out}.safetensors`]), /^mclip: usage error: --to pt: --out must name a \.pt or \.pth file, got '.*err\.safetensors' \(see mclip convert --help\)$/, 2);
    expectOneLineError(expect, await runMain(['convert', micro, '--to', 'safetensors', '--out', `${out}.pt`]), /--to safetensors: --out must name a \.safetensors file, got '.*err\.pt'/, 2);
    expectOneLineError(expect, await runMain(['convert', micro, '--to', 'pt', '--out', `${out}.pt`, '--dtype', 'bfloat16']), /--dtype must be one of float32, float16, got 'bfloat16'/, 2);
    expectOneLineError(expect, await runMain(['convert', join(tmp.dir, 'nope.pt'), '--to', 'safetensors', '--out', `${out}.safetensors`]), /^mclip: error: .*nope\.pt: checkpoint file not found$/);
    expectOneLineError(expect, await runMain(['convert', micro, '--out', `${out}.pt`]), /--to is required \(pt \| safetensors \| open_clip\) unless --attention is given \(see mclip convert --help\)$/, 2);
    expect(readdirSync(tmp.dir).filter((f) => f.startsWith('err'))).toEqual([]);
    expect(existsSync(`${out}.pt`)).toBe(false);
  });
});

describeFixtures('mclip convert: the S0 fixture .pt → safetensors → .pt', () => {
  const tmp = tempDir('convert-s0');
  afterAll(() => tmp.cleanup());

  it('keeps all 893 tensors (float16 771, int64 122) bit for bit, in file order', async () => {
    const src = fixture('mobileclip_s0', 'model_fp16.pt');
    const st = join(tmp.dir, 's0.safetensors');
    const pt = join(tmp.dir, 's0.pt');
    const a = await runMain(['--quiet', 'convert', src, '--to', 'safetensors', '--out', st]);
    expect(a.status, show(a)).toBe(0);
    expect(a.stdout).toBe(`${st}: 893 tensors: float16 771, int64 122\n`);
    const b = await runMain(['--quiet', 'convert', st, '--to', 'pt', '--out', pt]);
    expect(b.status, show(b)).toBe(0);
    const original = await loadTorchCheckpoint(src);
    const converted = await loadTorchCheckpoint(pt, { verifyChecksums: true });
    expectSame(converted, readSafetensors(st).tensors);
    expectSame(converted, original, { order: false });
    // .pt → .pt keeps the original order too
    const direct = join(tmp.dir, 'direct.pt');
    expect((await runMain(['--quiet', 'convert', src, '--to', 'pt', '--out', direct])).status).toBe(0);
    expectSame(await loadTorchCheckpoint(direct), original);
  });
});
