import { readFileSync } from 'node:fs';
import { zipSync } from 'fflate';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadTorchCheckpoint } from '../../src/base/io/torch-checkpoint.js';
import { readSafetensors } from '../../src/base/io/safetensors.js';
import { toFloat32, type StateDict, type TensorData } from '../../src/base/io/tensor-data.js';
import { fixture, describeFixtures } from '../paths.js';
import { f32Bytes, stateDictPickle, torchZip, PickleWriter, writeTensor } from './pickle-builder.js';

interface KeyInfo {
  name: string;
  shape: number[];
  dtype: string;
}

function keysJson(...parts: string[]): KeyInfo[] {
  return JSON.parse(readFileSync(fixture(...parts), 'utf8')) as KeyInfo[];
}

function expectLayout(sd: StateDict, keys: KeyInfo[]): void {
  expect([...sd.keys()]).toEqual(keys.map((k) => k.name));
  for (const k of keys) {
    const t = sd.get(k.name) as TensorData;
    expect({ name: k.name, shape: t.shape, dtype: t.dtype }).toEqual({ name: k.name, shape: k.shape, dtype: k.dtype });
    expect(t.data.length).toBe(k.shape.reduce((a, b) => a * b, 1));
  }
}

/** y[r, :] = x[r, :] @ w  (x: [rows, k], w: [k, n]) in float64. */
function matmul(x: Float32Array, w: Float32Array, rows: number, k: number, n: number): Float64Array {
  const y = new Float64Array(rows * n);
  for (let r = 0; r < rows; r++)
    for (let i = 0; i < k; i++) {
      const xv = x[r * k + i];
      for (let j = 0; j < n; j++) y[r * n + j] += xv * w[i * n + j];
    }
  return y;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function sum(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i];
  return s;
}

describeFixtures('mobileclip_s0/model_fp16.pt', () => {
  const path = fixture('mobileclip_s0', 'model_fp16.pt');
  let sd: StateDict;
  let loadMs = 0;
  beforeAll(async () => {
    const t0 = performance.now();
    sd = await loadTorchCheckpoint(path);
    loadMs = performance.now() - t0;
  });

  it('has all 893 keys, in file order, with the recorded shapes and dtypes', () => {
    const keys = keysJson('mobileclip_s0', 'state_dict_keys.json');
    expect(keys.length).toBe(893);
    expect(sd.size).toBe(893);
    expectLayout(sd, keys);
    expect(loadMs).toBeLessThan(5000);
  });

  it('keeps float16 as raw bits; counts match summary.json (float params, subnormals)', () => {
    const summary = JSON.parse(readFileSync(fixture('mobileclip_s0', 'summary.json'), 'utf8'));
    let floats = 0;
    let subnormals = 0;
    for (const t of sd.values()) {
      if (t.dtype !== 'float16') continue;
      expect(t.data).toBeInstanceOf(Uint16Array);
      floats += t.data.length;
      for (const h of t.data as Uint16Array) if ((h & 0x7c00) === 0 && (h & 0x3ff) !== 0) subnormals++;
    }
    expect(floats).toBe(summary.n_float_params);
    expect(floats).toBe(29133953);
    expect(subnormals).toBe(summary.n_fp16_subnormals);
    expect(subnormals).toBe(39080);
  });

  it('decodes values exactly (sums of float16 values in float64 are exact; reference: numpy)', () => {
    const w = toFloat32(sd.get('text_encoder.transformer.4.pre_norm_ffn.4.weight') as TensorData);
    expect(w.length).toBe(1048576);
    expect(sum(w)).toBe(45.016676008701324);
    let subSum = 0;
    let subMin = Infinity;
    for (const v of w) {
      if (v !== 0 && Math.abs(v) < 2 ** -14) {
        subSum += v;
        subMin = Math.min(subMin, Math.abs(v));
      }
    }
    expect(subSum).toBe(-0.0012160539627075195);
    expect(subMin).toBe(2 ** -24);
    const bits = sd.get('text_encoder.transformer.4.pre_norm_ffn.4.weight')?.data as Uint16Array;
    expect(bits[499]).toBe(0x38e);
    expect(w[499]).toBe(0x38e * 2 ** -24);

    const proj = toFloat32(sd.get('image_encoder.model.head.proj') as TensorData);
    expect(sum(proj)).toBe(12.689727663993835);
    expect([...proj.slice(0, 3)]).toEqual([0.025115966796875, -0.0160064697265625, -0.0274505615234375]);
    const conv = toFloat32(sd.get('image_encoder.model.patch_embed.0.rbr_conv.0.conv.weight') as TensorData);
    expect(sum(conv)).toBe(-12.074230670928955);
    expect(conv[1727]).toBe(0.0467529296875);
  });

  it('0-dim tensors: logit_scale (float16) and num_batches_tracked (int64 = 0)', async () => {
    const ls = sd.get('logit_scale') as TensorData;
    expect(ls.shape).toEqual([]);
    expect(toFloat32(ls)[0]).toBe(3.09375);
    // the same value the reference forward used
    const out = readSafetensors(fixture('mobileclip_s0', 'outputs_unfused.safetensors'));
    expect((out.tensors.get('logit_scale') as TensorData).data[0]).toBe(3.09375);
    let n = 0;
    for (const [k, t] of sd) {
      if (!k.endsWith('num_batches_tracked')) continue;
      n++;
      expect(t.dtype).toBe('int64');
      expect(t.shape).toEqual([]);
      expect(t.data).toBeInstanceOf(BigInt64Array);
      expect(t.data[0]).toBe(0n);
    }
    expect(n).toBe(122);
  });

  it('castFloat32 decodes every float tensor; weights reproduce the reference projections', async () => {
    const f = await loadTorchCheckpoint(path, { castFloat32: true });
    expect([...f.keys()]).toEqual([...sd.keys()]);
    for (const [k, t] of f) {
      if (k.endsWith('num_batches_tracked')) expect(t.dtype).toBe('int64');
      else {
        expect(t.dtype).toBe('float32');
        expect(t.data).toBeInstanceOf(Float32Array);
      }
    }
    const out = readSafetensors(fixture('mobileclip_s0', 'outputs_unfused.safetensors')).tensors;
    const g = (m: StateDict, k: string) => (m.get(k) as TensorData).data as Float32Array;
    // text.embed = text.pooled @ projection_layer ; image.embed = head.pool @ head.proj
    const te = matmul(g(out, 'text.pooled'), g(f, 'text_encoder.projection_layer'), 3, 512, 512);
    expect(maxAbsDiff(te, g(out, 'text.embed'))).toBeLessThan(1e-5);
    const ie = matmul(g(out, 'image.head.pool'), g(f, 'image_encoder.model.head.proj'), 2, 1024, 512);
    expect(maxAbsDiff(ie, g(out, 'image.embed'))).toBeLessThan(1e-5);
  });
});

describeFixtures('text_tower_fp32 checkpoints', () => {
  for (const [name, count] of [
    ['text_mct_d64', 85],
    ['text_base_causal_d64', 29],
  ] as const) {
    it(`${name}: keys, shapes, dtypes and values`, async () => {
      const sd = await loadTorchCheckpoint(fixture('text_tower_fp32', `${name}_fp32.pt`));
      const keys = keysJson('text_tower_fp32', `${name}_state_dict_keys.json`);
      expect(keys.length).toBe(count);
      expectLayout(sd, keys);
      const io = readSafetensors(fixture('text_tower_fp32', `${name}_io.safetensors`)).tensors;
      const pooled = (io.get('text.pooled') as TensorData).data as Float32Array;
      const embed = (io.get('text.embed') as TensorData).data as Float32Array;
      const proj = sd.get('projection_layer') as TensorData;
      expect(proj.dtype).toBe('float32');
      expect(proj.shape).toEqual([64, 32]);
      expect(maxAbsDiff(matmul(pooled, proj.data as Float32Array, 2, 64, 32), embed)).toBeLessThan(1e-5);
    });
  }
});

describe('hand-built checkpoints', () => {
  it('gathers non-contiguous strides, honours storage_offset, shares storages, any top folder', async () => {
    const storage = f32Bytes([0, 1, 2, 3, 4, 5, 6, 7]);
    const pkl = stateDictPickle([
      { name: 'full', storage: 'FloatStorage', key: '0', numel: 8, shape: [2, 4] },
      { name: 'transposed', storage: 'FloatStorage', key: '0', numel: 8, shape: [4, 2], stride: [1, 4] },
      { name: 'offset', storage: 'FloatStorage', key: '0', numel: 8, offset: 5, shape: [3] },
      { name: 'scalar', storage: 'FloatStorage', key: '0', numel: 8, offset: 7, shape: [] },
      { name: 'every_other', storage: 'FloatStorage', key: '0', numel: 8, offset: 1, shape: [2, 2], stride: [4, 2] },
      { name: 'broadcast', storage: 'FloatStorage', key: '0', numel: 8, offset: 2, shape: [2, 3], stride: [0, 1] },
      { name: 'empty', storage: 'FloatStorage', key: '0', numel: 8, shape: [0, 3] },
      { name: 'long', storage: 'LongStorage', key: '1', numel: 2, shape: [2] },
      { name: 'half', storage: 'HalfStorage', key: '2', numel: 2, shape: [2] },
      { name: 'bf16', storage: 'BFloat16Storage', key: '3', numel: 1, shape: [1] },
      { name: 'flag', storage: 'BoolStorage', key: '4', numel: 2, shape: [2] },
    ]);
    const zip = torchZip('my_weird_folder', pkl, {
      '0': storage,
      '1': new Uint8Array(BigInt64Array.from([-3n, 1n << 40n]).buffer),
      '2': new Uint8Array(Uint16Array.from([0x0001, 0xbc00]).buffer),
      '3': new Uint8Array(Uint16Array.from([0x4040]).buffer),
      '4': Uint8Array.from([1, 0]),
    });
    const sd = await loadTorchCheckpoint(zip, { name: 'crafted.pt' });
    const v = (k: string) => Array.from((sd.get(k) as TensorData).data as ArrayLike<number | bigint>);
    expect([...sd.keys()]).toEqual([
      'full', 'transposed', 'offset', 'scalar', 'every_other', 'broadcast', 'empty', 'long', 'half', 'bf16', 'flag',
    ]);
    expect(v('full')).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(v('transposed')).toEqual([0, 4, 1, 5, 2, 6, 3, 7]);
    expect(sd.get('transposed')?.shape).toEqual([4, 2]);
    expect(v('offset')).toEqual([5, 6, 7]);
    expect(v('scalar')).toEqual([7]);
    expect(sd.get('scalar')?.shape).toEqual([]);
    expect(v('every_other')).toEqual([1, 3, 5, 7]);
    expect(v('broadcast')).toEqual([2, 3, 4, 2, 3, 4]);
    expect(v('empty')).toEqual([]);
    expect(v('long')).toEqual([-3n, 1n << 40n]);
    expect(v('half')).toEqual([0x0001, 0xbc00]);
    expect(sd.get('half')?.dtype).toBe('float16');
    expect(sd.get('bf16')?.dtype).toBe('bfloat16');
    expect(sd.get('flag')?.dtype).toBe('bool');
    expect(v('flag')).toEqual([1, 0]);

    const cast = await loadTorchCheckpoint(zip, { castFloat32: true });
    expect([...(cast.get('half')?.data as Float32Array)]).toEqual([2 ** -24, -1]);
    expect([...(cast.get('bf16')?.data as Float32Array)]).toEqual([3]);
    expect(cast.get('long')?.dtype).toBe('int64');
  });

  it('reads protocol-4 opcodes (FRAME, SHORT_BINUNICODE, BINUNICODE8, STACK_GLOBAL, MEMOIZE)', async () => {
    const pkl = stateDictPickle(
      [
        { name: 'a.weight', storage: 'FloatStorage', key: '0', numel: 3, shape: [3] },
        { name: 'a.bias', storage: 'FloatStorage', key: '1', numel: 1, shape: [] },
      ],
      true,
    );
    const zip = torchZip('archive', pkl, { '0': f32Bytes([1, 2, 3]), '1': f32Bytes([-1]) });
    const sd = await loadTorchCheckpoint(zip);
    expect([...sd.keys()]).toEqual(['a.weight', 'a.bias']);
    expect([...(sd.get('a.weight')?.data as Float32Array)]).toEqual([1, 2, 3]);
    expect([...(sd.get('a.bias')?.data as Float32Array)]).toEqual([-1]);
  });

  it('reads deflated entries and _rebuild_tensor_v3 over an UntypedStorage', async () => {
    const w = new PickleWriter().proto(2).global('collections', 'OrderedDict').emptyTuple().reduce().mark();
    w.str('t').global('torch._utils', '_rebuild_tensor_v3').mark();
    w.mark().str('storage').global('torch.storage', 'UntypedStorage').str('0').str('cpu').int(12).tuple().op(0x51);
    w.int(1).ints([2]).ints([1]).bool(false).global('collections', 'OrderedDict').emptyTuple().reduce();
    w.global('torch', 'float32').tuple().reduce();
    w.setitems().stop();
    const files = { 'z/data.pkl': w.build(), 'z/data/0': f32Bytes([9, 8, 7]) };
    const sd = await loadTorchCheckpoint(zipSync(files, { level: 6 }), { verifyChecksums: true });
    expect(sd.get('t')?.dtype).toBe('float32');
    expect(Array.from(sd.get('t')?.data as Float32Array)).toEqual([8, 7]);
  });

  it("uses the 'state_dict' entry of a training checkpoint", async () => {
    const w = new PickleWriter().proto(2).op(0x7d).mark();
    w.str('epoch').int(7);
    w.str('state_dict').global('collections', 'OrderedDict').emptyTuple().reduce().mark();
    w.str('w');
    writeTensor(w, { name: 'w', storage: 'FloatStorage', key: '0', numel: 2, shape: [2] });
    w.setitems();
    w.str('lr').op(0x47, 0x3f, 0x50, 0x62, 0x4d, 0xd2, 0xf1, 0xa9, 0xfc); // BINFLOAT 0.001
    w.setitems().stop();
    const sd = await loadTorchCheckpoint(torchZip('ckpt', w.build(), { '0': f32Bytes([4, 5]) }));
    expect([...sd.keys()]).toEqual(['w']);
    expect([...(sd.get('w')?.data as Float32Array)]).toEqual([4, 5]);
  });

  it('accepts _rebuild_parameter around a tensor', async () => {
    const w = new PickleWriter().proto(2).op(0x7d).mark().str('p');
    w.global('torch._utils', '_rebuild_parameter').mark();
    writeTensor(w, { name: 'p', storage: 'DoubleStorage', key: '0', numel: 1, shape: [1] });
    w.bool(true).global('collections', 'OrderedDict').emptyTuple().reduce().tuple().reduce();
    w.setitems().stop();
    const sd = await loadTorchCheckpoint(torchZip('x', w.build(), { '0': new Uint8Array(Float64Array.of(2.5).buffer) }));
    expect(sd.get('p')?.dtype).toBe('float64');
    expect([...(sd.get('p')?.data as Float64Array)]).toEqual([2.5]);
  });
});
