import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readSafetensors, serializeSafetensors, writeSafetensors } from '../../src/base/io/safetensors.js';
import { DTYPE_SIZE, type StateDict, type TensorData } from '../../src/base/io/tensor-data.js';
import { MclipError } from '../../src/errors.js';
import { fixture, describeFixtures } from '../paths.js';

const tmp = mkdtempSync(join(tmpdir(), 'mclip-st-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function errorOf(fn: () => unknown): string {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(MclipError);
  const msg = (err as Error).message;
  expect(msg).not.toContain('\n');
  return msg;
}

/** A safetensors file from a raw header object and data bytes. */
function raw(header: unknown, data: Uint8Array = new Uint8Array(0), headerText?: string): Uint8Array {
  const json = new TextEncoder().encode(headerText ?? JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

function allDtypes(): StateDict {
  const sd: StateDict = new Map();
  sd.set('u8', { dtype: 'uint8', shape: [3], data: Uint8Array.from([0, 128, 255]) });
  sd.set('f32', { dtype: 'float32', shape: [2, 2], data: Float32Array.from([1.5, -2, 3.25, 1e-30]) });
  sd.set('bool', { dtype: 'bool', shape: [2], data: Uint8Array.from([1, 0]) });
  sd.set('f16', { dtype: 'float16', shape: [3], data: Uint16Array.from([0x0001, 0x7bff, 0xfc00]) });
  sd.set('bf16', { dtype: 'bfloat16', shape: [1, 1], data: Uint16Array.from([0x3f80]) });
  sd.set('f64', { dtype: 'float64', shape: [1], data: Float64Array.from([Math.PI]) });
  sd.set('i64', { dtype: 'int64', shape: [2], data: BigInt64Array.from([-(2n ** 62n), 42n]) });
  sd.set('i32', { dtype: 'int32', shape: [3], data: Int32Array.from([-(2 ** 31), 0, 2 ** 31 - 1]) });
  sd.set('i16', { dtype: 'int16', shape: [1], data: Int16Array.from([-32768]) });
  sd.set('i8', { dtype: 'int8', shape: [2], data: Int8Array.from([-128, 127]) });
  sd.set('scalar', { dtype: 'float32', shape: [], data: Float32Array.from([7]) });
  sd.set('scalar_i64', { dtype: 'int64', shape: [], data: BigInt64Array.from([0n]) });
  sd.set('empty', { dtype: 'float32', shape: [0, 4], data: new Float32Array(0) });
  sd.set('empty_u8', { dtype: 'uint8', shape: [0], data: new Uint8Array(0) });
  return sd;
}

describe('safetensors round trip', () => {
  it('every dtype, 0-dim and empty tensors, metadata; aligned layout', () => {
    const sd = allDtypes();
    const path = join(tmp, 'all.safetensors');
    writeSafetensors(path, sd, { format: 'pt', note: 'héllo' });
    const bytes = readFileSync(path);
    const hlen = Number(bytes.readBigUInt64LE(0));
    expect(hlen % 8).toBe(0);
    const header = JSON.parse(bytes.subarray(8, 8 + hlen).toString('utf8'));
    expect(header.__metadata__).toEqual({ format: 'pt', note: 'héllo' });
    // decreasing item size, each tensor aligned to its item size
    const entries = Object.entries(header)
      .filter(([k]) => k !== '__metadata__')
      .map(([k, v]) => ({ k, ...(v as { dtype: string; data_offsets: number[] }) }))
      .sort((a, b) => a.data_offsets[0] - b.data_offsets[0] || a.data_offsets[1] - b.data_offsets[1]);
    const sizes = entries.map((e) => DTYPE_SIZE[(sd.get(e.k) as TensorData).dtype]);
    for (let i = 1; i < sizes.length; i++) expect(sizes[i]).toBeLessThanOrEqual(sizes[i - 1]);
    for (const e of entries) expect((8 + hlen + e.data_offsets[0]) % DTYPE_SIZE[(sd.get(e.k) as TensorData).dtype]).toBe(0);
    expect(header.f16).toEqual({ dtype: 'F16', shape: [3], data_offsets: expect.any(Array) });
    expect(header.bool.dtype).toBe('BOOL');
    expect(header.bf16.dtype).toBe('BF16');
    expect(header.scalar.shape).toEqual([]);

    const back = readSafetensors(path);
    expect(back.metadata).toEqual({ format: 'pt', note: 'héllo' });
    expect(new Set(back.tensors.keys())).toEqual(new Set(sd.keys()));
    for (const [k, t] of sd) {
      const b = back.tensors.get(k) as TensorData;
      expect(b.dtype).toBe(t.dtype);
      expect(b.shape).toEqual(t.shape);
      expect(b.data.constructor).toBe(t.data.constructor);
      expect(Array.from(b.data as ArrayLike<number | bigint>)).toEqual(Array.from(t.data as ArrayLike<number | bigint>));
    }
    // no temporary files left behind
    expect(readdirSync(tmp).filter((f) => f.includes('.tmp-'))).toEqual([]);

    // in-memory serialization is byte-identical to the file
    expect(Buffer.from(serializeSafetensors(sd, { format: 'pt', note: 'héllo' })).equals(bytes)).toBe(true);

    const cast = readSafetensors(bytes, { castFloat32: true }).tensors;
    expect(Array.from(cast.get('f16')?.data as Float32Array)).toEqual([2 ** -24, 65504, -Infinity]);
    expect(Array.from(cast.get('bf16')?.data as Float32Array)).toEqual([1]);
    expect(cast.get('f64')?.dtype).toBe('float32');
    expect(cast.get('i64')?.dtype).toBe('int64');
  });

  it('overwrites an existing file atomically and handles an empty dict', () => {
    const path = join(tmp, 'over.safetensors');
    writeFileSync(path, 'old junk');
    writeSafetensors(path, new Map());
    const back = readSafetensors(path);
    expect(back.tensors.size).toBe(0);
    expect(back.metadata).toEqual({});
    expect(readFileSync(path).length).toBe(16); // 8 + "{}" padded to 8
  });

  it('reads from an unaligned buffer by copying', () => {
    const bytes = serializeSafetensors(allDtypes());
    const shifted = new Uint8Array(bytes.length + 1);
    shifted.set(bytes, 1);
    const view = shifted.subarray(1);
    const t = readSafetensors(view).tensors;
    expect(Array.from(t.get('f64')?.data as Float64Array)).toEqual([Math.PI]);
    expect(Array.from(t.get('i64')?.data as BigInt64Array)).toEqual([-(2n ** 62n), 42n]);
    expect(Array.from(t.get('f32')?.data as Float32Array)).toEqual([1.5, -2, 3.25, Math.fround(1e-30)]);
  });

  it('refuses inconsistent tensors on write, leaving no file', () => {
    const path = join(tmp, 'bad.safetensors');
    const sd: StateDict = new Map([['w', { dtype: 'float32', shape: [2, 3], data: new Float32Array(5) }]]);
    expect(errorOf(() => writeSafetensors(path, sd))).toBe(
      `${path}: tensor 'w': shape [2, 3] needs 6 elements, data has 5`,
    );
    const sd2: StateDict = new Map([['h', { dtype: 'float16', shape: [2], data: new Float32Array(2) }]]);
    expect(errorOf(() => writeSafetensors(path, sd2))).toBe(
      `${path}: tensor 'h': dtype float16 needs a Uint16Array, got a Float32Array`,
    );
    expect(existsSync(path)).toBe(false);
    expect(readdirSync(tmp).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });
});

describe('safetensors validation', () => {
  const f32x2 = new Uint8Array(8);
  it.each([
    ['too small', new Uint8Array(4), 'file has 4 bytes, too small for the 8-byte header length'],
    ['header beyond file', (() => { const b = raw({}); b[0] = 200; return b; })(), 'header length 200 exceeds the file size 10 (truncated?)'],
    ['bad JSON', raw(null, undefined, '{"a": [1, 2'), 'header is not valid JSON'],
    ['not an object', raw([1, 2]), 'header is not a JSON object'],
    ['missing dtype', raw({ w: { shape: [2], data_offsets: [0, 8] } }, f32x2), "tensor 'w': missing dtype"],
    ['unknown dtype', raw({ w: { dtype: 'F8_E4M3', shape: [2], data_offsets: [0, 2] } }, f32x2), "tensor 'w': unsupported dtype 'F8_E4M3'"],
    ['missing shape', raw({ w: { dtype: 'F32', data_offsets: [0, 8] } }, f32x2), "tensor 'w': missing or invalid shape undefined"],
    ['negative dim', raw({ w: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, f32x2), "tensor 'w': missing or invalid shape [-2]"],
    ['missing offsets', raw({ w: { dtype: 'F32', shape: [2] } }, f32x2), "tensor 'w': missing or invalid data_offsets undefined"],
    ['reversed offsets', raw({ w: { dtype: 'F32', shape: [2], data_offsets: [8, 0] } }, f32x2), "tensor 'w': missing or invalid data_offsets [8,0]"],
    ['offsets beyond file', raw({ w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, f32x2), "tensor 'w': data_offsets [0, 16] extend beyond the 8 data bytes of the file (truncated?)"],
    ['shape/offset mismatch', raw({ w: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, f32x2), "tensor 'w': data_offsets [0, 8] hold 8 bytes but shape [3] x F32 needs 12"],
    ['overlap', raw({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, f32x2), "tensor 'b' data_offsets [4, 8] overlap tensor 'a' [0, 8]"],
    ['bad metadata', raw({ __metadata__: { a: 1 } }), "__metadata__ 'a' is not a string"],
  ])('%s', (_name, bytes, expected) => {
    const msg = errorOf(() => readSafetensors(bytes as Uint8Array, { name: 'bad.safetensors' }));
    expect(msg.startsWith(`bad.safetensors: invalid safetensors file: ${expected}`)).toBe(true);
  });

  it('truncated file on disk', () => {
    const p = join(tmp, 'trunc.safetensors');
    const full = serializeSafetensors(allDtypes());
    writeFileSync(p, full.subarray(0, full.length - 3));
    expect(errorOf(() => readSafetensors(p))).toMatch(/trunc\.safetensors: invalid safetensors file: tensor '\w+': data_offsets \[\d+, \d+\] extend beyond the \d+ data bytes of the file \(truncated\?\)/);
    expect(errorOf(() => readSafetensors(join(tmp, 'missing.safetensors')))).toContain('cannot read file (ENOENT)');
  });
});

describeFixtures('fixture safetensors', () => {
  it('inputs.safetensors: image = image_u8 / 255 (NCHW vs NHWC), tokens from summary.json', () => {
    const { tensors } = readSafetensors(fixture('mobileclip_s0', 'inputs.safetensors'));
    expect([...tensors.keys()].sort()).toEqual(['image', 'image_u8', 'tokens']);
    const img = tensors.get('image') as TensorData;
    const u8 = tensors.get('image_u8') as TensorData;
    const tok = tensors.get('tokens') as TensorData;
    expect([img.dtype, img.shape]).toEqual(['float32', [2, 3, 256, 256]]);
    expect([u8.dtype, u8.shape]).toEqual(['uint8', [2, 256, 256, 3]]);
    expect([tok.dtype, tok.shape]).toEqual(['int32', [3, 77]]);
    const f = img.data as Float32Array;
    const p = u8.data as Uint8Array;
    let bad = 0;
    for (let n = 0; n < 2; n++)
      for (let c = 0; c < 3; c++)
        for (let y = 0; y < 256; y++)
          for (let x = 0; x < 256; x++) {
            const v = f[((n * 3 + c) * 256 + y) * 256 + x];
            if (v !== Math.fround(p[((n * 256 + y) * 256 + x) * 3 + c] / 255)) bad++;
          }
    expect(bad).toBe(0);
    const summary = JSON.parse(readFileSync(fixture('mobileclip_s0', 'summary.json'), 'utf8'));
    expect(Array.from(tok.data as Int32Array)).toEqual((summary.tokens as number[][]).flat());
  });

  it('outputs_unfused.safetensors: shapes and statistics match summary.json', () => {
    const { tensors } = readSafetensors(fixture('mobileclip_s0', 'outputs_unfused.safetensors'));
    const summary = JSON.parse(readFileSync(fixture('mobileclip_s0', 'summary.json'), 'utf8'));
    const stats = summary.activation_stats as Record<string, { shape: number[]; mean: number; absmax: number }>;
    expect(new Set(tensors.keys())).toEqual(new Set(Object.keys(stats)));
    for (const [k, s] of Object.entries(stats)) {
      const t = tensors.get(k) as TensorData;
      expect(t.shape).toEqual(s.shape);
      const d = t.data as Float32Array;
      let sum = 0;
      let absmax = 0;
      for (const v of d) {
        sum += v;
        absmax = Math.max(absmax, Math.abs(v));
      }
      expect(absmax).toBe(s.absmax);
      expect(Math.abs(sum / d.length - s.mean)).toBeLessThan(1e-6 * Math.max(1, Math.abs(s.mean)));
    }
  });
});
