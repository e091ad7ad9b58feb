/**
 * The PyTorch checkpoint writer (src/base/io/torch-writer.ts): what it writes reads back bit for bit through our
 * `.pt` reader, the zip is laid out as torch lays it out (stored, 64-byte aligned data, the records torch
 * writes), the pickle uses only opcodes and globals our restricted unpickler accepts, and a micro model saved as
 * `.pt` loads with loadModel and computes exactly what it computed before. (That torch.load and the official
 * load_state_dict accept these files is scripts/check-pt-in-torch.py's job: it needs Python.)
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { PyDict, isTensorRef, unpickleTorch, type TensorRef } from '../../src/base/io/pickle.js';
import { OP, PickleWriter } from '../../src/base/io/pickle-writer.js';
import {
  RECORD_ALIGNMENT,
  contiguousStrides,
  stateDictPickle,
  torchCheckpointBytes,
  writeTorchCheckpoint,
  type PickledTensor,
} from '../../src/base/io/torch-writer.js';
import { loadTorchCheckpoint } from '../../src/base/io/torch-checkpoint.js';
import { ZipArchive, bufferSource } from '../../src/base/io/zip.js';
import { encodeFloat16, tensorBytes, type StateDict, type TensorData } from '../../src/base/io/tensor-data.js';
import { CLIP } from '../../src/base/model/clip.js';
import { loadModel } from '../../src/base/model/checkpoint.js';
import { exportStateDict } from '../../src/base/model/state-dict.js';
import { MICRO_CONTEXT, MICRO_VOCAB, microConfig } from '../micro-config.js';

/**
 * The opcodes src/base/io/pickle.ts interprets (its file comment; the reader refuses every other opcode).
 * Kept here by hand because the reader does not export its switch.
 */
const READER_OPCODES = new Set([
  0x80, 0x95, 0x28, 0x2e, 0x30, 0x31, 0x32, 0x4e, 0x88, 0x89, 0x4a, 0x4b, 0x4d, 0x8a, 0x8b, 0x47, 0x58, 0x8c, 0x8d,
  0x42, 0x43, 0x8e, 0x29, 0x74, 0x85, 0x86, 0x87, 0x5d, 0x6c, 0x61, 0x65, 0x7d, 0x64, 0x73, 0x75, 0x63, 0x93, 0x52,
  0x62, 0x51, 0x71, 0x72, 0x94, 0x68, 0x6a,
]);

const f32 = (xs: number[]) => Float32Array.from(xs);
const bits32 = (xs: number[]) => new Float32Array(Uint32Array.from(xs).buffer);

/** Every dtype, with the edge values and shapes that matter: 0-dim, empty dims, NaN payloads, -0, extremes. */
function edgeCases(): StateDict {
  const sd: StateDict = new Map();
  const t = (name: string, x: TensorData) => sd.set(name, x);
  t('f32.scalar', { dtype: 'float32', shape: [], data: f32([-2.5]) });
  t('f32.vec', { dtype: 'float32', shape: [5], data: bits32([0x80000000, 0x7fc00001, 0xffc12345, 0x7f800000, 0x00000001]) });
  t('f32.mat', { dtype: 'float32', shape: [2, 3], data: f32([1, 2, 3, 4, 5, 6].map((x) => x / 7)) });
  t('f32.cube', { dtype: 'float32', shape: [2, 3, 4], data: Float32Array.from({ length: 24 }, (_, i) => Math.sin(i) * 1e30) });
  t('f32.ones', { dtype: 'float32', shape: [1, 1, 1, 1], data: f32([3.4028234663852886e38]) });
  t('f32.empty', { dtype: 'float32', shape: [0], data: new Float32Array(0) });
  t('f32.empty_mid', { dtype: 'float32', shape: [2, 0, 3], data: new Float32Array(0) });
  t('f16.scalar', { dtype: 'float16', shape: [], data: Uint16Array.of(0x4248) });
  t('f16.vec', { dtype: 'float16', shape: [6], data: Uint16Array.of(0x0001, 0x03ff, 0x8000, 0x7c00, 0xfe01, 0x7bff) });
  t('f16.mat', { dtype: 'float16', shape: [3, 2], data: Uint16Array.of(1, 2, 3, 0x3c00, 0xbc00, 0x5555) });
  t('f16.empty', { dtype: 'float16', shape: [3, 0], data: new Uint16Array(0) });
  t('bn.num_batches_tracked', { dtype: 'int64', shape: [], data: BigInt64Array.of(0n) });
  t('i64.vec', { dtype: 'int64', shape: [4], data: BigInt64Array.of(-(2n ** 63n), 2n ** 63n - 1n, -1n, 2n ** 40n) });
  t('i64.mat', { dtype: 'int64', shape: [2, 2], data: BigInt64Array.of(1n, 2n, 3n, 4n) });
  t('i64.empty', { dtype: 'int64', shape: [0, 2], data: new BigInt64Array(0) });
  t('bf16', { dtype: 'bfloat16', shape: [2], data: Uint16Array.of(0x4040, 0xff80) });
  t('f64', { dtype: 'float64', shape: [2], data: Float64Array.of(Math.PI, -0) });
  t('i32', { dtype: 'int32', shape: [2], data: Int32Array.of(-(2 ** 31), 2 ** 31 - 1) });
  t('i16', { dtype: 'int16', shape: [1], data: Int16Array.of(-32768) });
  t('i8', { dtype: 'int8', shape: [2], data: Int8Array.of(-128, 127) });
  t('u8', { dtype: 'uint8', shape: [2], data: Uint8Array.of(0, 255) });
  t('flag', { dtype: 'bool', shape: [3], data: Uint8Array.of(1, 0, 1) });
  return sd;
}

function expectSameStateDict(got: StateDict, want: StateDict): void {
  expect([...got.keys()]).toEqual([...want.keys()]);
  for (const [k, w] of want) {
    const g = got.get(k) as TensorData;
    expect({ k, dtype: g.dtype, shape: g.shape }).toEqual({ k, dtype: w.dtype, shape: w.shape });
    expect(g.data.constructor).toBe(w.data.constructor);
    expect(Buffer.from(tensorBytes(g)).equals(Buffer.from(tensorBytes(w))), k).toBe(true);
  }
}

/** The zip entry names in file order, and where each entry's data starts. */
async function zipLayout(bytes: Uint8Array): Promise<{ name: string; dataAt: number; method: number; size: number }[]> {
  const zip = await ZipArchive.open(bufferSource(bytes), 'w.pt');
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return [...zip.entries.values()]
    .sort((a, b) => a.localHeaderOffset - b.localHeaderOffset)
    .map((e) => ({
      name: e.name,
      method: e.method,
      size: e.size,
      dataAt: e.localHeaderOffset + 30 + dv.getUint16(e.localHeaderOffset + 26, true) + dv.getUint16(e.localHeaderOffset + 28, true),
    }));
}

describe('torch writer: state dict → .pt → state dict', () => {
  it('round-trips every dtype bit for bit (0-dim, empty dims, NaN payloads, -0, ±Inf, int64 extremes), key order kept', async () => {
    const sd = edgeCases();
    const bytes = torchCheckpointBytes(sd);
    expectSameStateDict(await loadTorchCheckpoint(bytes, { verifyChecksums: true }), sd);
    // zip64 records (automatic past 4 GiB) read back the same
    const z64 = torchCheckpointBytes(sd, { zip64: true });
    expect(z64.byteLength).toBeGreaterThan(bytes.byteLength);
    expectSameStateDict(await loadTorchCheckpoint(z64, { verifyChecksums: true }), sd);
    // deterministic
    expect(Buffer.from(torchCheckpointBytes(sd)).equals(Buffer.from(bytes))).toBe(true);
  });

  it('lays the zip out as torch.save does: stored entries, data 64-byte aligned, data.pkl/byteorder/data/<k>/version', async () => {
    const sd = edgeCases();
    const bytes = torchCheckpointBytes(sd);
    const layout = await zipLayout(bytes);
    expect(layout.map((e) => e.name)).toEqual([
      'archive/data.pkl',
      'archive/byteorder',
      ...[...sd.keys()].map((_, i) => `archive/data/${i}`),
      'archive/version',
    ]);
    for (const e of layout) {
      expect(e.method).toBe(0);
      expect(e.dataAt % RECORD_ALIGNMENT, e.name).toBe(0);
    }
    const text = (name: string) => {
      const e = layout.find((x) => x.name === name)!;
      return new TextDecoder().decode(bytes.subarray(e.dataAt, e.dataAt + e.size));
    };
    expect(text('archive/byteorder')).toBe('little');
    expect(text('archive/version')).toBe('3\n');
    const vec = layout.find((x) => x.name === 'archive/data/1')!;
    expect(vec.size).toBe(20);
    expect([...new Uint32Array(bytes.slice(vec.dataAt, vec.dataAt + 20).buffer)]).toEqual([0x80000000, 0x7fc00001, 0xffc12345, 0x7f800000, 1]);
    // empty tensors still get their (empty) storage record
    expect(layout.find((x) => x.name === 'archive/data/5')!.size).toBe(0);
  });

  it('pickles an OrderedDict of _rebuild_tensor_v2 calls with contiguous strides (torch counts an empty dim as 1)', () => {
    expect(contiguousStrides([])).toEqual([]);
    expect(contiguousStrides([2, 3, 4])).toEqual([12, 4, 1]);
    expect(contiguousStrides([2, 0, 3])).toEqual([3, 3, 1]);
    expect(contiguousStrides([3, 0])).toEqual([1, 1]);
    const entries: PickledTensor[] = [
      { name: 'w', storageClass: 'HalfStorage', key: '0', numel: 24, shape: [2, 3, 4] },
      { name: 'e', storageClass: 'FloatStorage', key: '1', numel: 0, shape: [2, 0, 3] },
      { name: 'n', storageClass: 'LongStorage', key: '2', numel: 1, shape: [] },
      { name: 'big', storageClass: 'FloatStorage', key: '3', numel: 3_000_000_000, shape: [70000, 42857] },
    ];
    const obj = unpickleTorch(stateDictPickle(entries), 't.pkl');
    expect(obj).toBeInstanceOf(PyDict);
    const d = obj as PyDict;
    expect(d.ordered).toBe(true);
    expect([...d.map.keys()]).toEqual(['w', 'e', 'n', 'big']);
    const refs = [...d.map.values()].filter(isTensorRef) as TensorRef[];
    expect(refs.map((r) => [r.storage.storageType, r.storage.key, r.storage.location, r.storage.numel, r.dtype])).toEqual([
      ['torch.HalfStorage', '0', 'cpu', 24, 'float16'],
      ['torch.FloatStorage', '1', 'cpu', 0, 'float32'],
      ['torch.LongStorage', '2', 'cpu', 1, 'int64'],
      ['torch.FloatStorage', '3', 'cpu', 3_000_000_000, 'float32'],
    ]);
    expect(refs.map((r) => [r.offset, r.shape, r.stride, r.requiresGrad])).toEqual([
      [0, [2, 3, 4], [12, 4, 1], false],
      [0, [2, 0, 3], [3, 3, 1], false],
      [0, [], [], false],
      [0, [70000, 42857], [42857, 1], false],
    ]);
  });

  it('emits only opcodes the reader accepts (protocol 2, BINPERSID; each global once, then BINGET)', () => {
    // 1200 tensors: SETITEMS in batches of 1000 and 200 as CPython batches; sizes needing BININT2, BININT, LONG1
    const many: PickledTensor[] = Array.from({ length: 1200 }, (_, i) => ({
      name: `k${i}`,
      storageClass: i % 2 ? 'HalfStorage' : 'LongStorage',
      key: String(i),
      numel: i === 7 ? 3_000_000_000 : i === 8 ? 70_000 : i + 1,
      shape: i === 7 ? [3, 1_000_000_000] : i === 8 ? [70_000] : [i + 1],
    }));
    const one: PickledTensor[] = [{ name: 'only', storageClass: 'FloatStorage', key: '0', numel: 1, shape: [] }];
    const emitted = (list: PickledTensor[]) => {
      const w = new PickleWriter();
      const bytes = stateDictPickle(list, w);
      for (const op of w.opcodes) expect(READER_OPCODES.has(op), `opcode 0x${op.toString(16)}`).toBe(true);
      const d = unpickleTorch(bytes, 'x.pkl') as PyDict;
      expect([...d.map.keys()]).toEqual(list.map((t) => t.name));
      return { ops: [...w.opcodes].sort((a, b) => a - b), text: Buffer.from(bytes).toString('latin1') };
    };
    const m = emitted(many);
    const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
    expect(m.ops).toEqual(
      sorted([
        OP.PROTO, OP.GLOBAL, OP.BINPUT, OP.BINGET, OP.EMPTY_TUPLE, OP.REDUCE, OP.MARK, OP.BINUNICODE, OP.TUPLE,
        OP.BINPERSID, OP.BININT1, OP.BININT2, OP.BININT, OP.LONG1, OP.TUPLE1, OP.TUPLE2, OP.NEWFALSE, OP.SETITEMS, OP.STOP,
      ]),
    );
    expect(m.text.split('torch._utils\n_rebuild_tensor_v2\n').length - 1).toBe(1);
    expect(m.text.split('collections\nOrderedDict\n').length - 1).toBe(1);
    expect(m.text.split('torch\nHalfStorage\n').length - 1).toBe(1);
    expect(m.text.split('torch\nLongStorage\n').length - 1).toBe(1);
    const d = unpickleTorch(stateDictPickle(many), 'x.pkl') as PyDict;
    const big = d.map.get('k7') as TensorRef;
    expect([big.storage.numel, big.shape, big.stride]).toEqual([3_000_000_000, [3, 1_000_000_000], [1_000_000_000, 1]]);
    // a single entry: SETITEM, as CPython writes a one-item batch
    expect(emitted(one).ops).toContain(OP.SETITEM);
    expect(emitted(one).ops).not.toContain(OP.SETITEMS);
  });
});

describe('torch writer: --dtype and the file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mclip-torch-writer-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('casts floating tensors to float16 (nearest even) or float32 (exact); int64 and bool stay', async () => {
    const sd: StateDict = new Map<string, TensorData>([
      ['w', { dtype: 'float32', shape: [4], data: f32([1 / 3, 65519, 65520, 2 ** -25 * 3]) }],
      ['h', { dtype: 'float16', shape: [2], data: Uint16Array.of(0x0001, 0xc000) }],
      ['n', { dtype: 'int64', shape: [], data: BigInt64Array.of(12n) }],
      ['b', { dtype: 'bool', shape: [1], data: Uint8Array.of(1) }],
    ]);
    const half = await loadTorchCheckpoint(torchCheckpointBytes(sd, { dtype: 'float16' }));
    expect(half.get('w')?.dtype).toBe('float16');
    expect([...(half.get('w')?.data as Uint16Array)]).toEqual([...encodeFloat16(sd.get('w')!.data as Float32Array)]);
    expect([...(half.get('w')?.data as Uint16Array)]).toEqual([0x3555, 0x7bff, 0x7c00, 0x0002]);
    expect(half.get('h')?.data).toEqual(Uint16Array.of(0x0001, 0xc000));
    expect(half.get('n')).toEqual({ dtype: 'int64', shape: [], data: BigInt64Array.of(12n) });
    expect(half.get('b')?.dtype).toBe('bool');
    const full = await loadTorchCheckpoint(torchCheckpointBytes(sd, { dtype: 'float32' }));
    expect([...(full.get('h')?.data as Float32Array)]).toEqual([2 ** -24, -2]);
    expect(full.get('w')?.data).toEqual(sd.get('w')?.data);
    expect(full.get('n')?.dtype).toBe('int64');
  });

  it('writes atomically: replaces an existing file, leaves no temporary file, fails in one line without a folder', async () => {
    const path = join(dir, 'm.pt');
    writeFileSync(path, 'old');
    const sd = edgeCases();
    const size = writeTorchCheckpoint(path, sd);
    expect(size).toBe(readFileSync(path).byteLength);
    expect(Buffer.from(readFileSync(path)).equals(Buffer.from(torchCheckpointBytes(sd)))).toBe(true);
    expect(readdirSync(dir)).toEqual(['m.pt']);
    const bad = join(dir, 'missing', 'm.pt');
    expect(() => writeTorchCheckpoint(bad, sd)).toThrow(/^.*missing\/m\.pt: cannot write PyTorch checkpoint \(ENOENT\)$/);
    expect(existsSync(join(dir, 'missing'))).toBe(false);
    // a malformed tensor is refused before anything is written
    const broken: StateDict = new Map([['x', { dtype: 'float32', shape: [3], data: f32([1, 2]) }]]);
    expect(() => writeTorchCheckpoint(join(dir, 'b.pt'), broken)).toThrow(/tensor 'x': shape \[3\] needs 3 elements, data has 2/);
    expect(readdirSync(dir)).toEqual(['m.pt']);
  });
});

describe('torch writer: a micro model as .pt', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mclip-torch-writer-model-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true, gradients: false });
  });

  it('loads with loadModel (no config, no --arch) and computes bit-identical embeddings', async () => {
    // A .pt holds no config: head counts come back as the official head widths (MCi 32, text 64), so the micro
    // model uses those here (microConfig's 16-wide image heads and 2 text heads could not come back).
    const cfg = microConfig();
    if (cfg.image.kind !== 'mci') throw new Error('expected an MCi image tower');
    cfg.image.headDim = 32;
    cfg.text.nHeads = 1;
    const model = new CLIP(cfg, { seed: 5 }).eval();
    const sd = exportStateDict(model);
    const path = join(dir, 'micro.pt');
    writeTorchCheckpoint(path, sd);
    expectSameStateDict(await loadTorchCheckpoint(path), sd);
    const x = tf.randomUniform([2, 32, 32, 3], 0, 1, 'float32', 11);
    const row = (ids: number[]) => [...ids, ...new Array<number>(MICRO_CONTEXT - ids.length).fill(0)];
    const tok = tf.tensor2d([row([MICRO_VOCAB - 2, 5, 9, MICRO_VOCAB - 1]), row([MICRO_VOCAB - 2, 77, MICRO_VOCAB - 1])], [2, MICRO_CONTEXT], 'int32');
    const ref = [model.encodeImage(x), model.encodeText(tok)];
    const loaded = await loadModel(path);
    expect(loaded.storedFused).toBe(false);
    const lc = loaded.config;
    expect([lc.embedDim, lc.text.dim, lc.text.nHeads, lc.text.vocabSize, lc.text.contextLength]).toEqual([64, 64, 1, MICRO_VOCAB, MICRO_CONTEXT]);
    expect(lc.image.kind === 'mci' ? [lc.image.embedDims, lc.image.layers, lc.image.headDim] : null).toEqual([[8, 16, 32, 64], [1, 1, 1, 1], 32]);
    const got = [loaded.model.encodeImage(x), loaded.model.encodeText(tok)];
    for (let i = 0; i < 2; i++) {
      const a = ref[i].dataSync();
      const b = got[i].dataSync();
      expect(b.length).toBe(cfg.embedDim * 2);
      expect(Buffer.from(b.buffer, b.byteOffset, b.byteLength).equals(Buffer.from(a.buffer, a.byteOffset, a.byteLength))).toBe(true);
    }
    expect(Math.abs(ref[0].dataSync()[0])).toBeGreaterThan(0);
    tf.dispose([x, tok, ...ref, ...got]);
    loaded.model.dispose();
    model.dispose();
  });
});
