import { describe, expect, it } from 'vitest';
import {
  castFloatToFloat32,
  decodeBFloat16,
  decodeFloat16,
  encodeBFloat16,
  encodeFloat16,
  floatToHalf,
  halfToFloat,
  numel,
  toFloat32,
} from '../../src/base/io/tensor-data.js';
import { MclipError } from '../../src/errors.js';

describe('float16 decode', () => {
  it('decodes hand-made bit patterns exactly', () => {
    const bits = Uint16Array.from([
      0x0001, 0x03ff, 0x0400, 0x3c00, 0x7bff, 0xfc00, 0x7c00, 0x7e00, 0x8000, 0x0000, 0xc000, 0x3555, 0x8001,
    ]);
    const f = decodeFloat16(bits);
    expect(f[0]).toBe(2 ** -24); // smallest subnormal
    expect(f[1]).toBe(1023 * 2 ** -24); // largest subnormal
    expect(f[2]).toBe(2 ** -14); // smallest normal
    expect(f[3]).toBe(1);
    expect(f[4]).toBe(65504); // largest finite
    expect(f[5]).toBe(-Infinity);
    expect(f[6]).toBe(Infinity);
    expect(Number.isNaN(f[7])).toBe(true);
    expect(Object.is(f[8], -0)).toBe(true);
    expect(Object.is(f[9], 0)).toBe(true);
    expect(f[10]).toBe(-2);
    expect(f[11]).toBe(0.333251953125);
    expect(f[12]).toBe(-(2 ** -24));
  });

  it('every subnormal is mantissa * 2^-24 and the table agrees with the formula', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const f = decodeFloat16(all);
    for (let m = 1; m < 1024; m++) {
      expect(f[m]).toBe(m * 2 ** -24);
      expect(f[0x8000 | m]).toBe(-m * 2 ** -24);
    }
    let mismatches = 0;
    for (let h = 0; h < 65536; h++) {
      const want = halfToFloat(h);
      if (!(Object.is(f[h], want) || (Number.isNaN(f[h]) && Number.isNaN(want)))) mismatches++;
    }
    expect(mismatches).toBe(0);
  });

  it('encode(decode(h)) round-trips every non-NaN half', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const back = encodeFloat16(decodeFloat16(all));
    let bad = 0;
    for (let h = 0; h < 65536; h++) {
      const isNaN = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
      if (isNaN ? (back[h] & 0x7fff) !== 0x7e00 : back[h] !== h) bad++;
    }
    expect(bad).toBe(0);
  });

  it('encode rounds to nearest even and overflows to infinity', () => {
    expect(floatToHalf(1 + 2 ** -11)).toBe(0x3c00); // tie -> even (down)
    expect(floatToHalf(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie -> even (up)
    expect(floatToHalf(65519)).toBe(0x7bff);
    expect(floatToHalf(65520)).toBe(0x7c00);
    expect(floatToHalf(-1e9)).toBe(0xfc00);
    expect(floatToHalf(2 ** -25)).toBe(0x0000); // tie between 0 and 2^-24 -> even (0)
    expect(floatToHalf(3 * 2 ** -25)).toBe(0x0002); // 1.5 * 2^-24 -> 2
    expect(floatToHalf(1023.5 * 2 ** -24)).toBe(0x0400); // rounds up into the normal range
    expect(floatToHalf(-0)).toBe(0x8000);
  });
});

describe('bfloat16', () => {
  it('decodes bit patterns exactly', () => {
    const f = decodeBFloat16(Uint16Array.from([0x3f80, 0xc040, 0x0001, 0x7f80, 0xff80, 0x7fc0, 0x8000, 0x4049]));
    expect(f[0]).toBe(1);
    expect(f[1]).toBe(-3);
    expect(f[2]).toBe(2 ** -133); // float32 subnormal
    expect(f[3]).toBe(Infinity);
    expect(f[4]).toBe(-Infinity);
    expect(Number.isNaN(f[5])).toBe(true);
    expect(Object.is(f[6], -0)).toBe(true);
    expect(f[7]).toBe(3.140625);
  });

  it('encodes with round to nearest even', () => {
    const b = encodeBFloat16([1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 3.14159265, NaN, -Infinity]);
    expect([...b.slice(0, 4)]).toEqual([0x3f80, 0x3f80, 0x3f82, 0x4049]);
    expect(b[4] & 0x7fc0).toBe(0x7fc0);
    expect(b[5]).toBe(0xff80);
  });
});

describe('toFloat32 / numel', () => {
  it('converts every dtype', () => {
    expect([...toFloat32({ dtype: 'int64', shape: [3], data: BigInt64Array.from([-5n, 0n, 7n]) })]).toEqual([-5, 0, 7]);
    expect([...toFloat32({ dtype: 'float64', shape: [2], data: Float64Array.from([0.1, -2]) })]).toEqual([
      Math.fround(0.1),
      -2,
    ]);
    expect([...toFloat32({ dtype: 'int8', shape: [2], data: Int8Array.from([-128, 127]) })]).toEqual([-128, 127]);
    expect([...toFloat32({ dtype: 'bool', shape: [2], data: Uint8Array.from([1, 0]) })]).toEqual([1, 0]);
    expect([...toFloat32({ dtype: 'float16', shape: [2], data: Uint16Array.from([0x3c00, 0x0001]) })]).toEqual([
      1,
      2 ** -24,
    ]);
    const f32 = Float32Array.from([1, 2]);
    expect(toFloat32({ dtype: 'float32', shape: [2], data: f32 })).toBe(f32); // no copy
    const cast = castFloatToFloat32({ dtype: 'bfloat16', shape: [1], data: Uint16Array.from([0x4000]) });
    expect(cast.dtype).toBe('float32');
    expect([...cast.data]).toEqual([2]);
    const ints = { dtype: 'int64' as const, shape: [], data: BigInt64Array.from([0n]) };
    expect(castFloatToFloat32(ints)).toBe(ints);
  });

  it('numel', () => {
    expect(numel([])).toBe(1);
    expect(numel([0, 5])).toBe(0);
    expect(numel([2, 3, 4])).toBe(24);
    expect(() => numel([2, -1])).toThrow(MclipError);
  });
});
