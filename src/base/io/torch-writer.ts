/**
 * Writes a state dict as a PyTorch checkpoint, the file `torch.save(model.state_dict(), f)` writes (zip
 * serialization, torch >= 1.6), so `torch.load` and the official `model.load_state_dict` take it and training
 * can continue in PyTorch; torch-checkpoint.ts reads it (and torch's own files) back.
 *
 * Layout (what torch writes): a zip of STORED entries, each entry's data aligned to 64 bytes by an 'FB'
 * extra field in its local header (as torch's PyTorchStreamWriter pads), in this order:
 * - `archive/data.pkl`: pickle protocol 2 of `collections.OrderedDict` key → `torch._utils._rebuild_tensor_v2(
 *   persistent_id(('storage', torch.<Type>Storage, '<k>', 'cpu', numel)), 0, size, stride, False, OrderedDict())`
 *   with contiguous strides as torch computes them (an empty dim counts as 1), storage keys '0', '1', ... in
 *   state-dict order, one storage per tensor. Only opcodes and globals pickle.ts accepts are used.
 * - `archive/byteorder` ("little"), `archive/data/<k>` (the raw little-endian elements of each tensor),
 *   `archive/version` ("3\n").
 * Zip64 records are written when an entry or the archive passes 4 GiB (or always, with `zip64`). The output is
 * deterministic: same state dict, same bytes (DOS time 1980-01-01 00:00).
 *
 * Dtypes are kept (float16 as its raw bits, int64 as int64), or every floating tensor is cast to `dtype`
 * (float16 rounds to nearest even); integer and bool tensors (`num_batches_tracked`) are never cast.
 */
import { writeFileAtomic } from './atomic-write.js';
import { MclipError } from '../../errors.js';
import { PickleWriter, BATCH_SIZE } from './pickle-writer.js';
import {
  checkTensor,
  encodeFloat16,
  isFloatDType,
  numel,
  tensorBytes,
  toFloat32,
  type DType,
  type StateDict,
  type TensorData,
} from './tensor-data.js';
import { crc32 } from './zip.js';

/** The torch storage class (module `torch`) that holds each dtype. */
export const STORAGE_CLASS: Readonly<Record<DType, string>> = {
  float32: 'FloatStorage',
  float16: 'HalfStorage',
  bfloat16: 'BFloat16Storage',
  float64: 'DoubleStorage',
  int64: 'LongStorage',
  int32: 'IntStorage',
  int16: 'ShortStorage',
  int8: 'CharStorage',
  uint8: 'ByteStorage',
  bool: 'BoolStorage',
};

/** The float dtypes a checkpoint can be converted to. */
export const SAVE_DTYPES = ['float32', 'float16'] as const;
export type SaveDType = (typeof SAVE_DTYPES)[number];

export interface TorchSaveOptions {
  /** Cast every floating tensor to this dtype (integer and bool tensors are kept). Default: keep dtypes. */
  dtype?: SaveDType;
  /** Write zip64 records for every entry even when nothing needs them (they are automatic past 4 GiB). */
  zip64?: boolean;
}

/** Torch's alignment of record data in the zip (caffe2 `kFieldAlignment`). */
export const RECORD_ALIGNMENT = 64;

/** One `_rebuild_tensor_v2` call: a view of storage `key` (`numel` elements of `storageClass`). */
export interface PickledTensor {
  name: string;
  /** e.g. 'FloatStorage' (module `torch`). */
  storageClass: string;
  key: string;
  /** Elements in the storage. */
  numel: number;
  /** Storage offset in elements (default 0). */
  offset?: number;
  shape: readonly number[];
  /** Default: contiguous ({@link contiguousStrides}). */
  stride?: readonly number[];
}

/** Row-major strides as torch computes them: stride[i] = prod(max(size[j], 1) for j > i). */
export function contiguousStrides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= Math.max(shape[i], 1);
  }
  return s;
}

/**
 * Emits `torch._utils._rebuild_tensor_v2(<storage>, offset, size, stride, False, OrderedDict())` with the
 * storage as a BINPERSID persistent id `('storage', torch.<class>, key, 'cpu', numel)`.
 */
export function pickleTensor(w: PickleWriter, t: PickledTensor): void {
  w.memoGlobal('torch._utils', '_rebuild_tensor_v2');
  w.tupleOf(6, () => {
    w.tupleOf(5, () => {
      w.str('storage').memoGlobal('torch', t.storageClass).str(t.key).str('cpu').int(t.numel);
    });
    w.binpersid();
    w.int(t.offset ?? 0).ints(t.shape).ints(t.stride ?? contiguousStrides(t.shape)).bool(false);
    w.memoGlobal('collections', 'OrderedDict').emptyTuple().reduce();
  });
  w.reduce();
}

/**
 * The `data.pkl` of a state dict: an OrderedDict of name → tensor, SETITEMS in batches as CPython writes.
 * `w` (a fresh writer) is for callers that want to see the opcodes written.
 */
export function stateDictPickle(tensors: readonly PickledTensor[], w: PickleWriter = new PickleWriter()): Uint8Array {
  w.proto(2);
  w.memoGlobal('collections', 'OrderedDict').emptyTuple().reduce().put();
  for (let i = 0; i < tensors.length; i += BATCH_SIZE) {
    const batch = tensors.slice(i, i + BATCH_SIZE);
    if (batch.length > 1) w.mark();
    for (const t of batch) {
      w.str(t.name);
      pickleTensor(w, t);
    }
    if (batch.length > 1) w.setitems();
    else w.setitem();
  }
  return w.stop().build();
}

/** `t` as `dtype` when it is floating (float16 rounded to nearest even), else `t` itself. */
export function castFloat(t: TensorData, dtype: SaveDType | undefined): TensorData {
  if (dtype === undefined || !isFloatDType(t.dtype) || t.dtype === dtype) return t;
  const f32 = toFloat32(t);
  return { dtype, shape: t.shape, data: dtype === 'float16' ? encodeFloat16(f32) : f32 };
}

/** The dtype `t` is written as. */
function savedDType(t: TensorData, dtype: SaveDType | undefined): DType {
  return dtype !== undefined && isFloatDType(t.dtype) ? dtype : t.dtype;
}

// ---------------------------------------------------------------------------------------------------------------
// zip (stored entries, torch's 64-byte data alignment)

const U32_MAX = 0xffffffff;
const DOS_DATE_1980_01_01 = 0x21;

class ZipOut {
  private offset = 0;
  private readonly central: Uint8Array[] = [];
  private count = 0;

  constructor(
    private readonly write: (bytes: Uint8Array) => void,
    private readonly forceZip64: boolean,
  ) {}

  private emit(b: Uint8Array): void {
    this.write(b);
    this.offset += b.byteLength;
  }

  add(name: string, data: Uint8Array): void {
    const nameBytes = new TextEncoder().encode(name);
    const size = data.byteLength;
    const crc = crc32(data);
    const at = this.offset;
    const bigSize = this.forceZip64 || size >= U32_MAX;
    const bigOffset = this.forceZip64 || at >= U32_MAX;
    const zip64Local = bigSize ? 4 + 16 : 0;
    // 'FB' padding field so the data starts on a RECORD_ALIGNMENT boundary (always present, as torch writes it).
    const start = at + 30 + nameBytes.byteLength + zip64Local + 4;
    const pad = (RECORD_ALIGNMENT - (start % RECORD_ALIGNMENT)) % RECORD_ALIGNMENT;
    const extraLen = zip64Local + 4 + pad;
    const version = bigSize || bigOffset ? 45 : 20;

    const local = new Uint8Array(30 + nameBytes.byteLength + extraLen);
    const l = new DataView(local.buffer);
    l.setUint32(0, 0x04034b50, true);
    l.setUint16(4, version, true);
    l.setUint16(6, 0, true); // flags
    l.setUint16(8, 0, true); // stored
    l.setUint16(10, 0, true); // time
    l.setUint16(12, DOS_DATE_1980_01_01, true);
    l.setUint32(14, crc, true);
    l.setUint32(18, bigSize ? U32_MAX : size, true);
    l.setUint32(22, bigSize ? U32_MAX : size, true);
    l.setUint16(26, nameBytes.byteLength, true);
    l.setUint16(28, extraLen, true);
    local.set(nameBytes, 30);
    let e = 30 + nameBytes.byteLength;
    if (bigSize) {
      l.setUint16(e, 0x0001, true);
      l.setUint16(e + 2, 16, true);
      l.setBigUint64(e + 4, BigInt(size), true);
      l.setBigUint64(e + 12, BigInt(size), true);
      e += 20;
    }
    local[e] = 0x46; // 'F'
    local[e + 1] = 0x42; // 'B'
    l.setUint16(e + 2, pad, true);
    local.fill(0x5a, e + 4); // 'Z', as torch fills it
    this.emit(local);
    this.emit(data);

    const z64: number[] = [];
    if (bigSize) z64.push(size, size);
    if (bigOffset) z64.push(at);
    const cExtra = z64.length ? 4 + 8 * z64.length : 0;
    const cen = new Uint8Array(46 + nameBytes.byteLength + cExtra);
    const c = new DataView(cen.buffer);
    c.setUint32(0, 0x02014b50, true);
    c.setUint16(4, version, true); // made by (MS-DOS attributes)
    c.setUint16(6, version, true); // needed
    c.setUint16(12, 0, true);
    c.setUint16(14, DOS_DATE_1980_01_01, true);
    c.setUint32(16, crc, true);
    c.setUint32(20, bigSize ? U32_MAX : size, true);
    c.setUint32(24, bigSize ? U32_MAX : size, true);
    c.setUint16(28, nameBytes.byteLength, true);
    c.setUint16(30, cExtra, true);
    c.setUint32(42, bigOffset ? U32_MAX : at, true);
    cen.set(nameBytes, 46);
    if (cExtra) {
      const p = 46 + nameBytes.byteLength;
      c.setUint16(p, 0x0001, true);
      c.setUint16(p + 2, 8 * z64.length, true);
      z64.forEach((v, i) => c.setBigUint64(p + 4 + 8 * i, BigInt(v), true));
    }
    this.central.push(cen);
    this.count++;
  }

  finish(): void {
    const cdOffset = this.offset;
    for (const c of this.central) this.emit(c);
    const cdSize = this.offset - cdOffset;
    const zip64 = this.forceZip64 || cdOffset >= U32_MAX || cdSize >= U32_MAX || this.count >= 0xffff;
    if (zip64) {
      const recAt = this.offset;
      const r = new DataView(new ArrayBuffer(56 + 20));
      r.setUint32(0, 0x06064b50, true);
      r.setBigUint64(4, 44n, true); // size of the rest of the record
      r.setUint16(12, 45, true);
      r.setUint16(14, 45, true);
      r.setBigUint64(24, BigInt(this.count), true);
      r.setBigUint64(32, BigInt(this.count), true);
      r.setBigUint64(40, BigInt(cdSize), true);
      r.setBigUint64(48, BigInt(cdOffset), true);
      r.setUint32(56, 0x07064b50, true); // locator
      r.setBigUint64(64, BigInt(recAt), true);
      r.setUint32(72, 1, true); // disks
      this.emit(new Uint8Array(r.buffer));
    }
    const end = new DataView(new ArrayBuffer(22));
    end.setUint32(0, 0x06054b50, true);
    end.setUint16(8, zip64 ? 0xffff : this.count, true);
    end.setUint16(10, zip64 ? 0xffff : this.count, true);
    end.setUint32(12, zip64 ? U32_MAX : cdSize, true);
    end.setUint32(16, zip64 ? U32_MAX : cdOffset, true);
    this.emit(new Uint8Array(end.buffer));
  }
}

/**
 * Writes a torch archive to `write`: `<top>/data.pkl`, `<top>/byteorder`, `<top>/data/<key>` for each storage
 * (an iterable, so storages can be produced one at a time), `<top>/version`.
 */
export function writeTorchArchive(
  write: (bytes: Uint8Array) => void,
  top: string,
  pkl: Uint8Array,
  storages: Iterable<readonly [string, Uint8Array]>,
  opts: { zip64?: boolean } = {},
): void {
  const zip = new ZipOut(write, opts.zip64 === true);
  const enc = new TextEncoder();
  zip.add(`${top}/data.pkl`, pkl);
  zip.add(`${top}/byteorder`, enc.encode('little'));
  for (const [key, bytes] of storages) zip.add(`${top}/data/${key}`, bytes);
  zip.add(`${top}/version`, enc.encode('3\n'));
  zip.finish();
}

/** {@link writeTorchArchive} into memory. */
export function torchArchiveBytes(
  top: string,
  pkl: Uint8Array,
  storages: Iterable<readonly [string, Uint8Array]>,
  opts: { zip64?: boolean } = {},
): Uint8Array {
  const chunks: Uint8Array[] = [];
  writeTorchArchive((b) => chunks.push(b), top, pkl, storages, opts);
  const out = new Uint8Array(chunks.reduce((s, c) => s + c.byteLength, 0));
  let p = 0;
  for (const c of chunks) {
    out.set(c, p);
    p += c.byteLength;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// state dict → checkpoint

function plan(sd: StateDict, opts: TorchSaveOptions, where: string): { pkl: Uint8Array; storages: Iterable<readonly [string, Uint8Array]> } {
  const entries: PickledTensor[] = [];
  let i = 0;
  for (const [name, t] of sd) {
    if (typeof name !== 'string') throw new MclipError(`${where}: state dict key ${String(name)} is not a string`);
    checkTensor(t, `${where}: tensor '${name}'`);
    entries.push({ name, storageClass: STORAGE_CLASS[savedDType(t, opts.dtype)], key: String(i++), numel: numel(t.shape), shape: t.shape });
  }
  const tensors = [...sd.values()];
  function* storages(): Generator<readonly [string, Uint8Array]> {
    for (let k = 0; k < tensors.length; k++) yield [String(k), tensorBytes(castFloat(tensors[k], opts.dtype))];
  }
  return { pkl: stateDictPickle(entries), storages: storages() };
}

/** The bytes of the checkpoint {@link writeTorchCheckpoint} writes. */
export function torchCheckpointBytes(sd: StateDict, opts: TorchSaveOptions = {}): Uint8Array {
  const { pkl, storages } = plan(sd, opts, '<buffer>');
  return torchArchiveBytes('archive', pkl, storages, opts);
}

/**
 * Writes `sd` as a `torch.save` checkpoint at `path`, atomically (a temporary file in the same folder,
 * fsync, rename; nothing is left behind on failure). Returns the file size.
 */
export function writeTorchCheckpoint(path: string, sd: StateDict, opts: TorchSaveOptions = {}): number {
  const { pkl, storages } = plan(sd, opts, path);
  return writeFileAtomic(path, 'PyTorch checkpoint', (append) => writeTorchArchive(append, 'archive', pkl, storages, opts));
}
