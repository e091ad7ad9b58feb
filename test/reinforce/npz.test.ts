import { describe, expect, test } from 'vitest';
import { zipSync } from 'fflate';
import { floatToHalf, halfToFloat, readNpy, readNpz, toFloat32, writeNpy, writeNpz, type NpyArray } from '../../src/base/data/npz.js';
import { MclipError } from '../../src/errors.js';

/** Builds a .npy by hand: magic, version, header length, dict literal padded to 64 bytes, data. */
function handNpy(header: string, data: Uint8Array, major = 1): Uint8Array {
  const pre = major === 1 ? 10 : 12;
  const total = Math.ceil((pre + header.length + 1) / 64) * 64;
  const h = header.padEnd(total - pre - 1, ' ') + '\n';
  const out = new Uint8Array(total + data.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, major, 0]);
  const dv = new DataView(out.buffer);
  if (major === 1) dv.setUint16(8, h.length, true);
  else dv.setUint32(8, h.length, true);
  for (let i = 0; i < h.length; i++) out[pre + i] = h.charCodeAt(i);
  out.set(data, total);
  return out;
}

describe('npy', () => {
  test('hand-made v1 header as numpy writes it', () => {
    const vals = new Float32Array([1, 2, 3, 4, 5, 6.5]);
    const a = readNpy(handNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", new Uint8Array(vals.buffer)));
    expect(a.dtype).toBe('float32');
    expect(a.shape).toEqual([2, 3]);
    expect([...a.data]).toEqual([...vals]);
  });

  test('v2/v3 headers, 1-D and scalar shapes, uint8', () => {
    const a = readNpy(handNpy("{'descr': '|u1', 'fortran_order': False, 'shape': (4,), }", new Uint8Array([1, 2, 3, 250]), 2));
    expect(a.shape).toEqual([4]);
    expect([...a.data]).toEqual([1, 2, 3, 250]);
    const b = readNpy(handNpy("{'descr': '<i4', 'fortran_order': False, 'shape': (), }", new Uint8Array(new Int32Array([-7]).buffer), 3));
    expect(b.shape).toEqual([]);
    expect([...b.data]).toEqual([-7]);
  });

  test('big-endian data is byte-swapped', () => {
    const a = readNpy(handNpy("{'descr': '>i4', 'fortran_order': False, 'shape': (2,), }", new Uint8Array([0, 0, 1, 2, 0xff, 0xff, 0xff, 0xfe])));
    expect([...a.data]).toEqual([258, -2]);
  });

  test('refuses Fortran order, object and structured dtypes, bad magic, truncation', () => {
    const d = new Uint8Array(24);
    expect(() => readNpy(handNpy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", d), 'x.npz: array "a"')).toThrow(/x\.npz: array "a": Fortran-order/);
    expect(() => readNpy(handNpy("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", d))).toThrow(/object arrays are not supported/);
    expect(() => readNpy(handNpy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", d))).toThrow(/structured dtypes/);
    expect(() => readNpy(handNpy("{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", d))).toThrow(MclipError);
    expect(() => readNpy(new Uint8Array(20))).toThrow(/not a \.npy file/);
    expect(() => readNpy(handNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (20,), }", d))).toThrow(/truncated \.npy data/);
  });

  test('write → read round trip for every dtype; header is 64-byte aligned', () => {
    const arrays: NpyArray[] = [
      { dtype: 'float32', shape: [2, 2], data: new Float32Array([1.5, -2, 3, 1e-8]) },
      { dtype: 'float16', shape: [3], data: new Uint16Array([floatToHalf(1), floatToHalf(-0.5), floatToHalf(65504)]) },
      { dtype: 'int64', shape: [2], data: new BigInt64Array([-(2n ** 40n), 5n]) },
      { dtype: 'int32', shape: [1, 3], data: new Int32Array([-1, 0, 2 ** 31 - 1]) },
      { dtype: 'uint8', shape: [0, 4], data: new Uint8Array(0) },
    ];
    for (const a of arrays) {
      const bytes = writeNpy(a);
      const hlen = new DataView(bytes.buffer).getUint16(8, true);
      expect((10 + hlen) % 64).toBe(0);
      const b = readNpy(bytes);
      expect(b.dtype).toBe(a.dtype);
      expect(b.shape).toEqual(a.shape);
      expect([...b.data]).toEqual([...a.data]);
    }
  });

  test('float16 conversion', () => {
    for (const v of [0, 1, -2, 0.333251953125, 65504, 6.103515625e-5, 5.960464477539063e-8]) expect(halfToFloat(floatToHalf(v))).toBe(v);
    expect(halfToFloat(floatToHalf(1e6))).toBe(Infinity);
    const f = toFloat32({ dtype: 'float16', shape: [2], data: new Uint16Array([0x3c00, 0xc000]) });
    expect([...f]).toEqual([1, -2]);
  });

  test('writeNpy refuses mismatched shape', () => {
    expect(() => writeNpy({ dtype: 'float32', shape: [2, 3], data: new Float32Array(5) }, 'out.npz: array "x"')).toThrow(/out\.npz: array "x": shape \[2, 3\] needs 6 elements, data has 5/);
  });
});

describe('npz', () => {
  test('round trip, stored and deflated', () => {
    const arrays = {
      image_emb: { dtype: 'float32', shape: [3, 4], data: Float32Array.from({ length: 12 }, (_, i) => i / 7) } as NpyArray,
      ids: { dtype: 'int64', shape: [2], data: new BigInt64Array([1n, 2n]) } as NpyArray,
    };
    for (const compress of [false, true]) {
      const m = readNpz(writeNpz(arrays, { compress }));
      expect([...m.keys()].sort()).toEqual(['ids', 'image_emb']);
      expect(m.get('image_emb')!.shape).toEqual([3, 4]);
      expect([...m.get('image_emb')!.data]).toEqual([...arrays.image_emb.data]);
      expect([...m.get('ids')!.data]).toEqual([1n, 2n]);
    }
  });

  test('reads a hand-zipped npz of hand-made .npy members', () => {
    const z = zipSync({ 'a.npy': handNpy("{'descr': '<f2', 'fortran_order': False, 'shape': (1,), }", new Uint8Array([0x00, 0x3c])) });
    const m = readNpz(z, 'h.npz');
    expect(m.get('a')!.dtype).toBe('float16');
    expect([...toFloat32(m.get('a')!)]).toEqual([1]);
  });

  test('reads a zip64-style npz as np.savez writes it (Python zipfile, force_zip64=True)', () => {
    const z = new Uint8Array(Buffer.from('UEsDBC0AAAAAAAAAIQCcIzaZ//////////8NABQAaW1hZ2VfZW1iLm5weQEAEACIAAAAAAAAAIgAAAAAAAAAk05VTVBZAQB2AHsnZGVzY3InOiAnPGY0JywgJ2ZvcnRyYW5fb3JkZXInOiBGYWxzZSwgJ3NoYXBlJzogKDIsKSwgfSAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIAqamRk/zcxMP1BLAQItAy0AAAAAAAAAIQCcIzaZiAAAAIgAAAANAAAAAAAAAAAAAACAAQAAAABpbWFnZV9lbWIubnB5UEsFBgAAAAABAAEAOwAAAMcAAAAAAA==', 'base64'));
    const m = readNpz(z, 'py.npz');
    expect([...m.get('image_emb')!.data]).toEqual([Math.fround(0.6), Math.fround(0.8)]);
  });

  test('not a zip → clear error', () => {
    expect(() => readNpz(new Uint8Array([1, 2, 3]), 'bad.npz')).toThrow(/bad\.npz: not a readable \.npz/);
  });
});
