/**
 * Loads a PyTorch `.pt` state dict (the zip format of `torch.save` since torch 1.6) without Python:
 * zip central directory → `<top>/data.pkl` (restricted unpickler, see pickle.ts) → storages `<top>/data/<key>`.
 *
 * - The zip's top folder name is not fixed (`archive/`, `model_fp16/`, ...): the single `<top>/data.pkl` decides it.
 * - The pickled object must be a dict (OrderedDict) of name → tensor. If it is instead a dict holding a
 *   `state_dict` (preferred) or `model` entry that is a dict of tensors (typical training checkpoints), that entry
 *   is used; the other entries must still only use allowed pickle globals.
 * - Keys keep file (pickle insertion) order.
 * - Each storage is read once, straight from the file into its own aligned buffer; tensors are views of it when
 *   contiguous, so tensors sharing a storage (tied weights, views) share memory, like in PyTorch. Non-contiguous
 *   tensors are gathered into a new row-major array.
 * - Tensors keep their stored dtype (float16 as raw Uint16Array bits, see tensor-data.ts) unless
 *   `castFloat32` is set, which decodes every floating tensor to float32.
 * - Legacy (torch < 1.6, non-zip) checkpoints are refused with a message saying how to re-save them.
 */
import { MclipError } from '../../errors.js';
import { unpickleTorch, isTensorRef, describe, PyDict, type StorageRef, type TensorRef } from './pickle.js';
import {
  DTYPE_SIZE,
  allocArray,
  castFloatToFloat32,
  numel,
  typedView,
  type StateDict,
  type TensorArray,
  type TensorData,
} from './tensor-data.js';
import { ZipArchive, bufferSource, fileSource, type ByteSource, type ZipEntry } from './zip.js';

export interface LoadTorchOptions {
  /** Decode every float16/bfloat16/float64 tensor to float32 (integer tensors are kept). Default false. */
  castFloat32?: boolean;
  /** Also check the CRC-32 of every storage (data.pkl is always checked). Default false. */
  verifyChecksums?: boolean;
  /** Name used in error messages when `source` is a buffer. */
  name?: string;
}

/** Loads a `torch.save(state_dict)` checkpoint from a file path (or the file's bytes). */
export async function loadTorchCheckpoint(
  path: string | Uint8Array,
  opts: LoadTorchOptions = {},
): Promise<StateDict> {
  const name = typeof path === 'string' ? path : (opts.name ?? '<buffer>');
  const src: ByteSource = typeof path === 'string' ? await fileSource(path) : bufferSource(path);
  try {
    return await loadFrom(src, name, opts);
  } finally {
    await src.close();
  }
}

async function loadFrom(src: ByteSource, name: string, opts: LoadTorchOptions): Promise<StateDict> {
  const head = await src.read(0, Math.min(4, src.size), new Uint8Array(Math.min(4, src.size)));
  if (head[0] === 0x80 && head.length >= 2 && head[1] <= 5) {
    throw new MclipError(
      `${name}: legacy (non-zip) PyTorch checkpoint format is not supported; re-save it with ` +
        `torch.save(torch.load(f), out) using torch >= 1.6`,
    );
  }
  if (!(head[0] === 0x50 && head[1] === 0x4b)) {
    throw new MclipError(`${name}: not a valid PyTorch checkpoint (no zip signature at the start of the file)`);
  }
  const zip = await ZipArchive.open(src, name);

  const pkls = [...zip.entries.keys()].filter((k) => /^[^/]+\/data\.pkl$/.test(k));
  if (pkls.length !== 1) {
    throw new MclipError(
      `${name}: not a valid PyTorch checkpoint (expected exactly one '<folder>/data.pkl' in the zip, found ${pkls.length})`,
    );
  }
  const top = pkls[0].slice(0, -'data.pkl'.length);
  const byteorder = zip.entries.get(`${top}byteorder`);
  if (byteorder) {
    const bo = new TextDecoder().decode(await zip.read(byteorder)).trim();
    if (bo !== 'little') throw new MclipError(`${name}: byteorder '${bo}' is not supported (expected 'little')`);
  }
  const pklEntry = zip.entries.get(pkls[0]) as ZipEntry;
  const pkl = await zip.read(pklEntry, { verify: true });
  const obj = unpickleTorch(pkl, `${name}:${pkls[0]}`);

  const dict = selectStateDict(obj, name);

  const storages = new Map<string, { ref: StorageRef; buffer: ArrayBuffer }>();
  const loadStorage = async (ref: StorageRef, key: string): Promise<ArrayBuffer> => {
    const cached = storages.get(ref.key);
    if (cached) {
      if (cached.ref.dtype !== ref.dtype || cached.ref.numel !== ref.numel) {
        throw new MclipError(
          `${name}: storage '${ref.key}' is used as ${ref.storageType}[${ref.numel}] by '${key}' but as ` +
            `${cached.ref.storageType}[${cached.ref.numel}] elsewhere`,
        );
      }
      return cached.buffer;
    }
    const entryName = `${top}data/${ref.key}`;
    const entry = zip.entries.get(entryName);
    if (!entry) throw new MclipError(`${name}: tensor '${key}': storage entry '${entryName}' is missing from the zip`);
    const nbytes = ref.numel * DTYPE_SIZE[ref.dtype];
    if (entry.size !== nbytes) {
      throw new MclipError(
        `${name}: tensor '${key}': storage '${entryName}' has ${entry.size} bytes, expected ${nbytes} ` +
          `(${ref.numel} x ${ref.dtype})`,
      );
    }
    const buffer = new ArrayBuffer(nbytes);
    await zip.read(entry, { target: new Uint8Array(buffer), verify: opts.verifyChecksums === true });
    storages.set(ref.key, { ref, buffer });
    return buffer;
  };

  const out: StateDict = new Map();
  for (const [k, v] of dict.map) {
    if (typeof k !== 'string') throw new MclipError(`${name}: state dict key ${String(k)} is not a string`);
    if (!isTensorRef(v)) throw new MclipError(`${name}: state dict entry '${k}' is ${describe(v)}, not a tensor`);
    const buffer = await loadStorage(v.storage, k);
    let t = materialize(v, buffer, name, k);
    if (opts.castFloat32) t = castFloatToFloat32(t);
    out.set(k, t);
  }
  return out;
}

function isTensorDict(v: unknown): boolean {
  if (!(v instanceof PyDict)) return false;
  for (const x of v.map.values()) if (!isTensorRef(x)) return false;
  return true;
}

function selectStateDict(obj: unknown, name: string): PyDict {
  if (!(obj instanceof PyDict)) {
    throw new MclipError(`${name}: checkpoint holds ${describe(obj)}, expected a state dict (a dict of tensors)`);
  }
  if (isTensorDict(obj)) return obj;
  for (const key of ['state_dict', 'model']) {
    const inner = obj.map.get(key);
    if (isTensorDict(inner)) return inner as PyDict;
  }
  const keys = [...obj.map.keys()].slice(0, 8).map(String);
  const bad = [...obj.map.entries()].find(([, v]) => !isTensorRef(v));
  const hint = bad ? `; entry '${String(bad[0])}' is ${describe(bad[1])}` : '';
  throw new MclipError(
    `${name}: checkpoint is a dict but not a state dict (keys: ${keys.join(', ')}${obj.map.size > 8 ? ', ...' : ''}${hint}); ` +
      `expected tensors, or a 'state_dict'/'model' entry holding them`,
  );
}

/** Builds the tensor described by `ref` over its storage bytes (a view when contiguous, else gathered). */
function materialize(ref: TensorRef, storage: ArrayBuffer, name: string, key: string): TensorData {
  const { dtype, shape, stride, offset } = ref;
  const n = numel(shape);
  const isz = DTYPE_SIZE[dtype];
  const storageElems = storage.byteLength / isz;
  const where = () => `${name}: tensor '${key}' (shape [${shape.join(', ')}], stride [${stride.join(', ')}], offset ${offset})`;
  if (!Number.isInteger(storageElems)) {
    throw new MclipError(`${where()}: storage of ${storage.byteLength} bytes is not a whole number of ${dtype}`);
  }
  if (n > 0) {
    let last = offset;
    for (let i = 0; i < shape.length; i++) last += (shape[i] - 1) * stride[i];
    if (last >= storageElems) {
      throw new MclipError(`${where()} reads element ${last} beyond its storage of ${storageElems} elements`);
    }
  }
  let contiguous = true;
  let expect = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] !== 1 && stride[i] !== expect) contiguous = false;
    expect *= shape[i];
  }
  let data: TensorArray;
  if (n === 0) {
    data = allocArray(dtype, 0);
  } else if (contiguous) {
    data = typedView(dtype, storage, offset * isz, n);
  } else {
    // Gather a strided view into a new row-major array.
    const src = typedView(dtype, storage, 0, storageElems) as unknown as { [i: number]: number | bigint };
    const dst = allocArray(dtype, n) as unknown as { [i: number]: number | bigint };
    const rank = shape.length;
    const idx = new Array<number>(rank).fill(0);
    let s = offset;
    for (let i = 0; i < n; i++) {
      dst[i] = src[s];
      for (let d = rank - 1; d >= 0; d--) {
        idx[d]++;
        s += stride[d];
        if (idx[d] < shape[d]) break;
        s -= stride[d] * shape[d];
        idx[d] = 0;
      }
    }
    data = dst as unknown as TensorArray;
  }
  return { dtype, shape: [...shape], data };
}
