/**
 * The in-memory tensor type shared by every checkpoint reader/writer (PyTorch `.pt`, safetensors).
 *
 * Storage convention (one fixed typed-array class per dtype, checked by the writers):
 *
 * | dtype      | `data`          | notes                                             |
 * |------------|-----------------|---------------------------------------------------|
 * | float32    | Float32Array    |                                                   |
 * | float16    | Uint16Array     | raw IEEE binary16 bit patterns (NOT decoded)      |
 * | bfloat16   | Uint16Array     | raw bfloat16 bit patterns (upper half of a f32)   |
 * | float64    | Float64Array    |                                                   |
 * | int64      | BigInt64Array   |                                                   |
 * | int32      | Int32Array      |                                                   |
 * | int16      | Int16Array      |                                                   |
 * | int8       | Int8Array       |                                                   |
 * | uint8      | Uint8Array      |                                                   |
 * | bool       | Uint8Array      | 0 / 1                                             |
 *
 * Decision: half-precision tensors are kept as raw `Uint16Array` bits so loading is lossless, takes half the
 * memory and round-trips bit-exactly to an F16/BF16 safetensors file. Use {@link toFloat32} to decode one
 * tensor, or the loaders' `castFloat32` option to decode every floating tensor (float16/bfloat16/float64) to
 * float32 at load time (the model always runs in float32). Integer and bool tensors are never cast.
 *
 * Data is always little-endian in files; arrays here are native (all supported platforms are little-endian).
 * `data.length` always equals `numel(shape)`; a 0-dim tensor (`shape = []`) has one element.
 */
import { MclipError, check } from '../../errors.js';

export type DType =
  | 'float32'
  | 'float16'
  | 'bfloat16'
  | 'float64'
  | 'int64'
  | 'int32'
  | 'int16'
  | 'int8'
  | 'uint8'
  | 'bool';

export type TensorArray =
  | Float32Array
  | Float64Array
  | Int32Array
  | BigInt64Array
  | Int16Array
  | Int8Array
  | Uint8Array
  | Uint16Array;

export interface TensorData {
  dtype: DType;
  shape: number[];
  data: TensorArray;
}

/** Tensors by name, in file order. */
export type StateDict = Map<string, TensorData>;

export const DTYPES: readonly DType[] = [
  'float32',
  'float16',
  'bfloat16',
  'float64',
  'int64',
  'int32',
  'int16',
  'int8',
  'uint8',
  'bool',
];

/** Bytes per element. */
export const DTYPE_SIZE: Readonly<Record<DType, number>> = {
  float64: 8,
  int64: 8,
  float32: 4,
  int32: 4,
  float16: 2,
  bfloat16: 2,
  int16: 2,
  int8: 1,
  uint8: 1,
  bool: 1,
};

export function isFloatDType(dtype: DType): boolean {
  return dtype === 'float32' || dtype === 'float16' || dtype === 'bfloat16' || dtype === 'float64';
}

/** Number of elements of a shape (1 for a 0-dim shape `[]`). Throws on negative or non-integer dims. */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) throw new MclipError(`invalid tensor shape [${shape.join(', ')}]`);
    n *= d;
  }
  if (!Number.isSafeInteger(n)) throw new MclipError(`tensor shape [${shape.join(', ')}] is too large`);
  return n;
}

/** The typed-array constructor used for `dtype` (see the table at the top of this file). */
export function arrayClassFor(dtype: DType):
  | Float32ArrayConstructor
  | Float64ArrayConstructor
  | Int32ArrayConstructor
  | BigInt64ArrayConstructor
  | Int16ArrayConstructor
  | Int8ArrayConstructor
  | Uint8ArrayConstructor
  | Uint16ArrayConstructor {
  switch (dtype) {
    case 'float32':
      return Float32Array;
    case 'float16':
    case 'bfloat16':
      return Uint16Array;
    case 'float64':
      return Float64Array;
    case 'int64':
      return BigInt64Array;
    case 'int32':
      return Int32Array;
    case 'int16':
      return Int16Array;
    case 'int8':
      return Int8Array;
    case 'uint8':
    case 'bool':
      return Uint8Array;
  }
}

/** A view of `byteLength` bytes at `byteOffset` of `buffer` as the array type of `dtype` (offset must be aligned). */
export function typedView(dtype: DType, buffer: ArrayBufferLike, byteOffset: number, length: number): TensorArray {
  const C = arrayClassFor(dtype);
  return new C(buffer as ArrayBuffer, byteOffset, length);
}

/** Allocates a zero-filled array for `dtype` with `length` elements. */
export function allocArray(dtype: DType, length: number): TensorArray {
  const C = arrayClassFor(dtype);
  return new C(length);
}

/**
 * The `dtype` array for the little-endian bytes `bytes` (length must be a multiple of the item size).
 * Returns a view without copying when `bytes` is suitably aligned, else a copy.
 */
export function arrayFromBytes(dtype: DType, bytes: Uint8Array): TensorArray {
  const size = DTYPE_SIZE[dtype];
  check(bytes.byteLength % size === 0, `byte length ${bytes.byteLength} is not a multiple of ${dtype} size ${size}`);
  const n = bytes.byteLength / size;
  if (bytes.byteOffset % size === 0) return typedView(dtype, bytes.buffer, bytes.byteOffset, n);
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return typedView(dtype, copy.buffer, 0, n);
}

/** The raw little-endian bytes of a tensor's data (a view, no copy). */
export function tensorBytes(t: TensorData): Uint8Array {
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

/** Throws an MclipError unless `t.data` has the array class and length that `t.dtype`/`t.shape` require. */
export function checkTensor(t: TensorData, what: string): void {
  check(DTYPES.includes(t.dtype), () => `${what}: unknown dtype '${String(t.dtype)}'`);
  check(
    Array.isArray(t.shape) && t.shape.every((d) => Number.isSafeInteger(d) && d >= 0),
    () => `${what}: invalid shape ${JSON.stringify(t.shape)}`,
  );
  const C = arrayClassFor(t.dtype);
  check(
    t.data instanceof C,
    () => `${what}: dtype ${t.dtype} needs a ${C.name}, got a ${(t.data as object)?.constructor?.name ?? typeof t.data}`,
  );
  const n = numel(t.shape);
  check(
    t.data.length === n,
    () => `${what}: shape [${t.shape.join(', ')}] needs ${n} elements, data has ${t.data.length}`,
  );
}

// ---------------------------------------------------------------------------------------------------------------
// float16 / bfloat16

let HALF_TABLE: Float32Array | undefined;

/** Decodes one IEEE binary16 bit pattern exactly (subnormals: mantissa * 2^-24; keeps -0, ±Inf, NaN). */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant === 0 ? sign * Infinity : NaN;
  return sign * (1024 + mant) * 2 ** (exp - 25);
}

function halfTable(): Float32Array {
  if (!HALF_TABLE) {
    HALF_TABLE = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) HALF_TABLE[h] = halfToFloat(h);
  }
  return HALF_TABLE;
}

/** Decodes float16 bit patterns to float32 (exact; every half is representable in float32). */
export function decodeFloat16(bits: Uint16Array): Float32Array {
  const table = halfTable();
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = table[bits[i]];
  return out;
}

/** Decodes bfloat16 bit patterns to float32 (exact: the bits are the upper half of a float32). */
export function decodeBFloat16(bits: Uint16Array): Float32Array {
  const out = new Uint32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = bits[i] << 16;
  return new Float32Array(out.buffer);
}

const F32 = new Float32Array(1);
const U32 = new Uint32Array(F32.buffer);

/** Rounds a number to the nearest float16 (ties to even; overflow to ±Inf; NaN to 0x7e00) and returns its bits. */
export function floatToHalf(value: number): number {
  F32[0] = value;
  const x = U32[0];
  const sign = (x >>> 16) & 0x8000;
  const abs = x & 0x7fffffff;
  if (abs > 0x7f800000) return sign | 0x7e00; // NaN
  if (abs >= 0x477ff000) return sign | 0x7c00; // >= 65520 rounds to Inf (and Inf itself)
  if (abs < 0x38800000) {
    // float16 subnormal (or zero): mantissa = round_half_even(|v| * 2^24); 1024 becomes the smallest normal.
    const scaled = Math.abs(F32[0]) * 2 ** 24; // exact in float64
    let m = Math.floor(scaled);
    const frac = scaled - m;
    if (frac > 0.5 || (frac === 0.5 && m & 1)) m++;
    return sign | m;
  }
  const exp = (abs >>> 23) - 127 + 15;
  const mant = abs & 0x7fffff;
  let h = (exp << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && h & 1)) h++;
  return sign | h;
}

/** Encodes float32 values as float16 bits (round to nearest even). */
export function encodeFloat16(values: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = floatToHalf(values[i]);
  return out;
}

/** Encodes float32 values as bfloat16 bits (round to nearest even; NaN stays NaN). */
export function encodeBFloat16(values: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    F32[0] = values[i];
    const x = U32[0];
    if ((x & 0x7fffffff) > 0x7f800000) out[i] = ((x >>> 16) & 0x8000) | 0x7fc0;
    else out[i] = ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// conversions

/**
 * The values of `t` as float32. Returns `t.data` itself (no copy) when `t` is already float32; otherwise a new
 * array: float16/bfloat16 decoded exactly, float64 rounded, integers/bools converted (int64 via Number()).
 */
export function toFloat32(t: TensorData): Float32Array {
  switch (t.dtype) {
    case 'float32':
      return t.data as Float32Array;
    case 'float16':
      return decodeFloat16(t.data as Uint16Array);
    case 'bfloat16':
      return decodeBFloat16(t.data as Uint16Array);
    case 'int64': {
      const src = t.data as BigInt64Array;
      const out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = Number(src[i]);
      return out;
    }
    default:
      return Float32Array.from(t.data as Float64Array | Int32Array | Int16Array | Int8Array | Uint8Array);
  }
}

/** `t` with every floating dtype (float16, bfloat16, float64) cast to float32; other tensors returned as is. */
export function castFloatToFloat32(t: TensorData): TensorData {
  if (!isFloatDType(t.dtype) || t.dtype === 'float32') return t;
  return { dtype: 'float32', shape: t.shape, data: toFloat32(t) };
}

/** Applies {@link castFloatToFloat32} to every tensor (same key order). */
export function castStateDictFloat32(sd: StateDict): StateDict {
  const out: StateDict = new Map();
  for (const [k, t] of sd) out.set(k, castFloatToFloat32(t));
  return out;
}
