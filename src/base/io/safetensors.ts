/**
 * safetensors reader/writer (https://github.com/huggingface/safetensors format):
 * u64 little-endian header length N, N bytes of JSON `{name: {dtype, shape, data_offsets: [begin, end]}, ...,
 * "__metadata__": {str: str}}`, then the raw little-endian tensor data; offsets are relative to the data start.
 *
 * Reading validates everything and returns tensors in data-offset (file) order; an aligned tensor is a view of
 * the file buffer (no copy), an unaligned one is copied. Writing pads the header with spaces to a multiple of 8
 * and orders tensors by decreasing item size (stable), so every tensor is aligned to its item size; the file is
 * written to a temporary name and renamed into place.
 */
import { readFileSync } from 'node:fs';
import { writeFileAtomic } from './atomic-write.js';
import { MclipError } from '../../errors.js';
import {
  DTYPE_SIZE,
  arrayFromBytes,
  castFloatToFloat32,
  checkTensor,
  numel,
  tensorBytes,
  type DType,
  type StateDict,
} from './tensor-data.js';

const CODE_OF: Readonly<Record<DType, string>> = {
  float32: 'F32',
  float16: 'F16',
  bfloat16: 'BF16',
  float64: 'F64',
  int64: 'I64',
  int32: 'I32',
  int16: 'I16',
  int8: 'I8',
  uint8: 'U8',
  bool: 'BOOL',
};

const DTYPE_OF: Readonly<Record<string, DType>> = Object.fromEntries(
  Object.entries(CODE_OF).map(([d, c]) => [c, d as DType]),
);

/** The largest header accepted on read. */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export interface SafetensorsFile {
  tensors: StateDict;
  metadata: Record<string, string>;
}

export interface ReadSafetensorsOptions {
  /** Decode every F16/BF16/F64 tensor to float32. Default false. */
  castFloat32?: boolean;
  /** Name used in error messages when reading from a buffer. */
  name?: string;
}

/** Reads and validates a safetensors file (path) or its bytes. Every problem is a one-line MclipError. */
export function readSafetensors(source: string | Uint8Array, opts: ReadSafetensorsOptions = {}): SafetensorsFile {
  let bytes: Uint8Array;
  const name = typeof source === 'string' ? source : (opts.name ?? '<buffer>');
  if (typeof source === 'string') {
    try {
      bytes = readFileSync(source);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new MclipError(`${source}: cannot read file (${code ?? String(e)})`, { cause: e });
    }
  } else {
    bytes = source;
  }
  const fail = (msg: string): never => {
    throw new MclipError(`${name}: invalid safetensors file: ${msg}`);
  };
  const size = bytes.byteLength;
  if (size < 8) fail(`file has ${size} bytes, too small for the 8-byte header length`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const hlen = dv.getBigUint64(0, true);
  if (hlen > BigInt(size - 8)) fail(`header length ${hlen} exceeds the file size ${size} (truncated?)`);
  if (hlen > BigInt(MAX_HEADER_BYTES)) fail(`header length ${hlen} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  const n = Number(hlen);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n)));
  } catch (e) {
    fail(`header is not valid JSON (${(e as Error).message.split('\n')[0]})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) fail('header is not a JSON object');
  const dataStart = 8 + n;
  const dataSize = size - dataStart;

  const metadata: Record<string, string> = {};
  const entries: { key: string; dtype: DType; shape: number[]; begin: number; end: number }[] = [];
  for (const [key, raw] of Object.entries(header as Record<string, unknown>)) {
    if (key === '__metadata__') {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail('__metadata__ is not an object');
      for (const [mk, mv] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof mv !== 'string') fail(`__metadata__ '${mk}' is not a string`);
        Object.defineProperty(metadata, mk, { value: mv, enumerable: true, writable: true, configurable: true });
      }
      continue;
    }
    const bad = (why: string): never => fail(`tensor '${key}': ${why}`);
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) bad('entry is not an object');
    const { dtype: code, shape, data_offsets: offs } = raw as Record<string, unknown>;
    if (typeof code !== 'string') bad('missing dtype');
    const dtype = Object.hasOwn(DTYPE_OF, code as string) ? DTYPE_OF[code as string] : undefined;
    if (!dtype) return bad(`unsupported dtype '${String(code)}' (supported: ${Object.keys(DTYPE_OF).join(', ')})`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      bad(`missing or invalid shape ${JSON.stringify(shape)}`);
    }
    if (
      !Array.isArray(offs) ||
      offs.length !== 2 ||
      !offs.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      offs[0] > offs[1]
    ) {
      bad(`missing or invalid data_offsets ${JSON.stringify(offs)}`);
    }
    const [begin, end] = offs as number[];
    if (end > dataSize) {
      bad(`data_offsets [${begin}, ${end}] extend beyond the ${dataSize} data bytes of the file (truncated?)`);
    }
    let count: number;
    try {
      count = numel(shape as number[]);
    } catch {
      return bad(`shape ${JSON.stringify(shape)} is too large`);
    }
    const expected = count * DTYPE_SIZE[dtype];
    if (end - begin !== expected) {
      bad(
        `data_offsets [${begin}, ${end}] hold ${end - begin} bytes but shape [${(shape as number[]).join(', ')}] ` +
          `x ${code} needs ${expected}`,
      );
    }
    entries.push({ key, dtype, shape: [...(shape as number[])], begin, end });
  }
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < entries.length; i++) {
    const p = entries[i - 1];
    const c = entries[i];
    if (c.begin < p.end) {
      fail(`tensor '${c.key}' data_offsets [${c.begin}, ${c.end}] overlap tensor '${p.key}' [${p.begin}, ${p.end}]`);
    }
  }
  const tensors: StateDict = new Map();
  for (const e of entries) {
    const data = arrayFromBytes(e.dtype, bytes.subarray(dataStart + e.begin, dataStart + e.end));
    const t = { dtype: e.dtype, shape: e.shape, data };
    tensors.set(e.key, opts.castFloat32 ? castFloatToFloat32(t) : t);
  }
  return { tensors, metadata };
}

/** The header and the tensor order of a safetensors file for `tensors`. */
function layout(tensors: StateDict, metadata: Record<string, string> | undefined, name: string) {
  const order = [...tensors.entries()]
    .map(([key, t], i) => ({ key, t, i }))
    .sort((a, b) => DTYPE_SIZE[b.t.dtype] - DTYPE_SIZE[a.t.dtype] || a.i - b.i);
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new MclipError(`${name}: metadata '${k}' must be a string, got ${typeof v}`);
    }
    header.__metadata__ = metadata;
  }
  let offset = 0;
  for (const { key, t } of order) {
    if (key === '__metadata__' || key.length === 0) throw new MclipError(`${name}: invalid tensor name '${key}'`);
    checkTensor(t, `${name}: tensor '${key}'`);
    const nbytes = t.data.byteLength;
    header[key] = { dtype: CODE_OF[t.dtype], shape: t.shape, data_offsets: [offset, offset + nbytes] };
    offset += nbytes;
  }
  let json = JSON.stringify(header);
  const enc = new TextEncoder();
  let hbytes = enc.encode(json);
  const pad = (8 - (hbytes.byteLength % 8)) % 8;
  if (pad) {
    json += ' '.repeat(pad);
    hbytes = enc.encode(json);
  }
  const prefix = new Uint8Array(8 + hbytes.byteLength);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(hbytes.byteLength), true);
  prefix.set(hbytes, 8);
  return { prefix, order, dataSize: offset };
}

/** Serializes tensors (+ optional string metadata) to safetensors bytes in memory. */
export function serializeSafetensors(tensors: StateDict, metadata?: Record<string, string>): Uint8Array {
  const { prefix, order, dataSize } = layout(tensors, metadata, '<buffer>');
  const out = new Uint8Array(prefix.byteLength + dataSize);
  out.set(prefix, 0);
  let p = prefix.byteLength;
  for (const { t } of order) {
    out.set(tensorBytes(t), p);
    p += t.data.byteLength;
  }
  return out;
}

/** Writes a safetensors file atomically (temporary file in the same folder, fsync, rename). */
export function writeSafetensors(path: string, tensors: StateDict, metadata?: Record<string, string>): void {
  const { prefix, order } = layout(tensors, metadata, path);
  writeFileAtomic(path, 'safetensors file', (append) => {
    append(prefix);
    for (const { t } of order) append(tensorBytes(t));
  });
}
