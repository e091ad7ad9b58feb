/**
 * NumPy `.npy` / `.npz` reading and writing (what `np.save`, `np.savez`, `np.savez_compressed` and
 * `np.load` use), for the dtypes we need: float32, float16, int64, int32, uint8 (little- or
 * big-endian on read; little-endian on write), C order only.
 *
 * `.npy` layout: magic `\x93NUMPY`, major/minor version byte (1.0: 2-byte header length; 2.0 and
 * 3.0: 4-byte; 3.0 header is UTF-8), then a Python dict literal
 * `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }` padded with spaces and a `\n` so
 * that the data starts on a 64-byte boundary, then the raw data.
 * `.npz`: a zip archive (stored or deflated) whose members are `<name>.npy`.
 *
 * Fortran-order arrays, object (`O`) and structured dtypes and other dtypes are refused with an
 * MclipError naming the file/key and what was expected.
 *
 * float16 arrays keep their raw IEEE half bits in a Uint16Array; `toFloat32` converts any array.
 */
import { unzipSync, zipSync, type Zippable } from 'fflate';
import { MclipError } from '../../errors.js';

export type NpyDtype = 'float32' | 'float16' | 'int64' | 'int32' | 'uint8';

export interface NpyDataMap {
  float32: Float32Array;
  /** raw IEEE 754 half-precision bits */
  float16: Uint16Array;
  int64: BigInt64Array;
  int32: Int32Array;
  uint8: Uint8Array;
}

export interface NpyArray<D extends NpyDtype = NpyDtype> {
  dtype: D;
  shape: number[];
  data: NpyDataMap[D];
}

const DESCR: Record<NpyDtype, { code: string; size: number }> = {
  float32: { code: 'f4', size: 4 },
  float16: { code: 'f2', size: 2 },
  int64: { code: 'i8', size: 8 },
  int32: { code: 'i4', size: 4 },
  uint8: { code: 'u1', size: 1 },
};

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

function dtypeFromDescr(descr: string, where: string): { dtype: NpyDtype; bigEndian: boolean } {
  const m = /^([<>|=])?([a-zA-Z]\d*)$/.exec(descr);
  const fail = (): never => {
    throw new MclipError(`${where}: unsupported dtype '${descr}' (expected one of <f4, <f2, <i8, <i4, |u1${descr.includes('O') ? '; object arrays are not supported' : ''})`);
  };
  if (!m) return fail();
  const order = m[1] ?? '=';
  for (const [dtype, d] of Object.entries(DESCR) as [NpyDtype, { code: string; size: number }][]) {
    if (d.code === m[2]) return { dtype, bigEndian: order === '>' && d.size > 1 };
  }
  return fail();
}

/** Number of elements of a shape (1 for a scalar `()`). */
export function shapeSize(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Parses the header dict literal of a .npy file. */
function parseHeader(text: string, where: string): { descr: string; fortran: boolean; shape: number[] } {
  const descrM = /['"]descr['"]\s*:\s*(['"])([^'"]*)\1/.exec(text);
  if (!descrM) {
    if (/['"]descr['"]\s*:\s*\[/.test(text)) throw new MclipError(`${where}: structured dtypes are not supported (expected a plain numeric array)`);
    throw new MclipError(`${where}: .npy header has no 'descr' (got ${JSON.stringify(text.trim().slice(0, 80))})`);
  }
  const fortM = /['"]fortran_order['"]\s*:\s*(True|False)/.exec(text);
  if (!fortM) throw new MclipError(`${where}: .npy header has no 'fortran_order' True/False`);
  const shapeM = /['"]shape['"]\s*:\s*\(([^)]*)\)/.exec(text);
  if (!shapeM) throw new MclipError(`${where}: .npy header has no 'shape' tuple`);
  const parts = shapeM[1]
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  const shape = parts.map((p) => {
    const s = p.replace(/L$/, '');
    if (!/^\d+$/.test(s)) throw new MclipError(`${where}: bad shape entry '${p}' in .npy header`);
    return Number(s);
  });
  return { descr: descrM[2], fortran: fortM[1] === 'True', shape };
}

/** Decodes one `.npy` file. `where` names it in errors (file or `file:key`). */
export function readNpy(bytes: Uint8Array, where = '(npy)'): NpyArray {
  if (bytes.byteLength < 10 || !MAGIC.every((v, i) => bytes[i] === v)) throw new MclipError(`${where}: not a .npy file (missing \\x93NUMPY magic)`);
  const major = bytes[6];
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let hlen: number;
  let start: number;
  if (major === 1) {
    hlen = dv.getUint16(8, true);
    start = 10;
  } else if (major === 2 || major === 3) {
    if (bytes.byteLength < 12) throw new MclipError(`${where}: truncated .npy header`);
    hlen = dv.getUint32(8, true);
    start = 12;
  } else {
    throw new MclipError(`${where}: unsupported .npy format version ${major}.${bytes[7]} (expected 1.0, 2.0 or 3.0)`);
  }
  if (start + hlen > bytes.byteLength) throw new MclipError(`${where}: truncated .npy header (needs ${start + hlen} bytes, file has ${bytes.byteLength})`);
  const text = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(bytes.subarray(start, start + hlen));
  const h = parseHeader(text, where);
  const { dtype, bigEndian } = dtypeFromDescr(h.descr, where);
  const n = shapeSize(h.shape);
  if (h.fortran && h.shape.filter((d) => d > 1).length > 1) throw new MclipError(`${where}: Fortran-order arrays are not supported (expected C order; save with np.ascontiguousarray)`);
  const size = DESCR[dtype].size;
  const off = start + hlen;
  const need = n * size;
  if (bytes.byteLength - off < need) throw new MclipError(`${where}: truncated .npy data (shape [${h.shape.join(', ')}] ${h.descr} needs ${need} bytes, has ${bytes.byteLength - off})`);
  const raw = bytes.slice(off, off + need); // copy: aligned, owned
  if (bigEndian) {
    for (let i = 0; i < need; i += size) raw.subarray(i, i + size).reverse();
  }
  const buf = raw.buffer;
  let data: NpyDataMap[NpyDtype];
  switch (dtype) {
    case 'float32':
      data = new Float32Array(buf, 0, n);
      break;
    case 'float16':
      data = new Uint16Array(buf, 0, n);
      break;
    case 'int64':
      data = new BigInt64Array(buf, 0, n);
      break;
    case 'int32':
      data = new Int32Array(buf, 0, n);
      break;
    case 'uint8':
      data = raw;
      break;
  }
  return { dtype, shape: h.shape, data } as NpyArray;
}

/** Encodes one array as a version 1.0 `.npy` file (little-endian, C order). */
export function writeNpy(arr: NpyArray, where = '(npy)'): Uint8Array {
  const d = DESCR[arr.dtype];
  if (!d) throw new MclipError(`${where}: unsupported dtype '${String(arr.dtype)}' (expected float32, float16, int64, int32 or uint8)`);
  for (const s of arr.shape) if (!Number.isInteger(s) || s < 0) throw new MclipError(`${where}: bad shape [${arr.shape.join(', ')}] (expected non-negative integers)`);
  const n = shapeSize(arr.shape);
  if (arr.data.length !== n) throw new MclipError(`${where}: shape [${arr.shape.join(', ')}] needs ${n} elements, data has ${arr.data.length}`);
  const descr = `${d.size === 1 ? '|' : '<'}${d.code}`;
  const shapeStr = arr.shape.length === 1 ? `(${arr.shape[0]},)` : `(${arr.shape.join(', ')})`;
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': ${shapeStr}, }`;
  let major = 1;
  let pre = 10;
  if (header.length + 1 + pre > 0xffff) {
    major = 2;
    pre = 12;
  }
  const total = Math.ceil((pre + header.length + 1) / 64) * 64;
  header = header.padEnd(total - pre - 1, ' ') + '\n';
  const out = new Uint8Array(total + n * d.size);
  out.set(MAGIC, 0);
  out[6] = major;
  out[7] = 0;
  const dv = new DataView(out.buffer);
  if (major === 1) dv.setUint16(8, header.length, true);
  else dv.setUint32(8, header.length, true);
  for (let i = 0; i < header.length; i++) out[pre + i] = header.charCodeAt(i);
  const src = arr.data;
  out.set(new Uint8Array(src.buffer, src.byteOffset, n * d.size), total);
  return out;
}

/** Reads a `.npz` archive: array name (without `.npy`) → array. */
export function readNpz(bytes: Uint8Array, where = '(npz)'): Map<string, NpyArray> {
  let files: Record<string, Uint8Array>;
  try {
    files = unzipSync(bytes);
  } catch (e) {
    throw new MclipError(`${where}: not a readable .npz (zip) archive: ${e instanceof Error ? e.message : String(e)}`);
  }
  const out = new Map<string, NpyArray>();
  for (const [name, data] of Object.entries(files)) {
    if (name.endsWith('/')) continue;
    const key = name.endsWith('.npy') ? name.slice(0, -4) : name;
    out.set(key, readNpy(data, `${where}: array "${key}"`));
  }
  return out;
}

/** Writes a `.npz` archive (`compress`: deflate like `np.savez_compressed`, default stored like `np.savez`). */
export function writeNpz(arrays: ReadonlyMap<string, NpyArray> | Record<string, NpyArray>, options: { compress?: boolean; where?: string } = {}): Uint8Array {
  const where = options.where ?? '(npz)';
  const entries = arrays instanceof Map ? [...arrays] : Object.entries(arrays);
  const zip: Zippable = {};
  for (const [k, a] of entries) {
    if (k.length === 0 || k.includes('/')) throw new MclipError(`${where}: bad array name "${k}" (expected a plain identifier)`);
    zip[`${k}.npy`] = [writeNpy(a, `${where}: array "${k}"`), { level: options.compress ? 6 : 0, mtime: new Date(Date.UTC(1980, 0, 1, 12)) }];
  }
  return zipSync(zip);
}

/** IEEE half bits → number. */
export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

/** number → IEEE half bits (round to nearest even). */
export function floatToHalf(v: number): number {
  const f32 = new Float32Array([v]);
  const x = new Uint32Array(f32.buffer)[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let r = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    if (rem > half || (rem === half && r & 1)) r++;
    return sign | r;
  }
  let r = mant >>> 13;
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && r & 1)) {
    r++;
    if (r === 0x400) {
      r = 0;
      e++;
      if (e >= 31) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | r;
}

/** Any supported array as float32 values (float16 decoded, integers converted). */
export function toFloat32(a: NpyArray): Float32Array {
  switch (a.dtype) {
    case 'float32':
      return a.data as Float32Array;
    case 'float16': {
      const src = a.data as Uint16Array;
      const out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = halfToFloat(src[i]);
      return out;
    }
    case 'int64': {
      const src = a.data as BigInt64Array;
      const out = new Float32Array(src.length);
      for (let i = 0; i < src.length; i++) out[i] = Number(src[i]);
      return out;
    }
    default:
      return Float32Array.from(a.data as Int32Array | Uint8Array);
  }
}
