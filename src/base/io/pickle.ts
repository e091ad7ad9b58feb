/**
 * A restricted unpickler for PyTorch state dicts (`data.pkl` inside a `torch.save` zip).
 *
 * It interprets pickle opcodes as pure data operations and never imports or runs code: a `GLOBAL` is resolved
 * against a fixed table of names a state dict needs (below); anything else is refused with an MclipError naming
 * the opcode and the global. `REDUCE` only "calls" the allowed rebuild functions, implemented here as plain data
 * constructors; `BUILD` is only accepted on dicts (the `_metadata` attribute of a state dict's OrderedDict).
 *
 * Supported: protocols 2-5 as written by `torch.save` (PROTO, FRAME, MARK, STOP, POP, POP_MARK, DUP, NONE,
 * NEWTRUE/NEWFALSE, BININT/BININT1/BININT2, LONG1/LONG4, BINFLOAT, BINUNICODE/SHORT_BINUNICODE/BINUNICODE8,
 * BINBYTES/SHORT_BINBYTES/BINBYTES8, EMPTY_TUPLE/TUPLE/TUPLE1-3, EMPTY_LIST/LIST/APPEND/APPENDS,
 * EMPTY_DICT/DICT/SETITEM/SETITEMS, GLOBAL/STACK_GLOBAL, REDUCE, BUILD, BINPERSID,
 * BINPUT/LONG_BINPUT/MEMOIZE/BINGET/LONG_BINGET).
 *
 * Allowed globals: `collections.OrderedDict`; `torch._utils._rebuild_tensor`, `_rebuild_tensor_v2`,
 * `_rebuild_tensor_v3`, `_rebuild_parameter`, `_rebuild_parameter_with_state`; `torch._tensor._rebuild_from_type_v2`
 * (only re-wrapping as `torch.Tensor` / `torch.nn.parameter.Parameter`); the typed storage classes
 * (`torch.FloatStorage` ... `torch.BoolStorage`, `torch[.storage].UntypedStorage`) as persistent-id tags; dtype objects
 * (`torch.float32` ...); `_codecs.encode` (how protocol 2 spells a `bytes` literal).
 *
 * Python values map to: None → null, bool → boolean, int → number (bigint beyond 2^53), float → number,
 * str → string, bytes → Uint8Array, list → unknown[], tuple → {@link PyTuple}, dict/OrderedDict → {@link PyDict},
 * tensors → {@link TensorRef} (data not loaded: the caller resolves storages).
 */
import { MclipError } from '../../errors.js';
import type { DType } from './tensor-data.js';

export class PyTuple {
  constructor(readonly items: readonly unknown[]) {}
}

export class PyDict {
  readonly map = new Map<unknown, unknown>();
  /** Attributes set by BUILD (e.g. OrderedDict `_metadata`); kept but unused. */
  attrs: PyDict | undefined;
  constructor(readonly ordered: boolean) {}
}

/** A reference to an allowed global (never imported, only a tag). */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
  get qualname(): string {
    return `${this.module}.${this.name}`;
  }
}

/** A storage named by a persistent id `('storage', storage_type, key, location, numel)`. */
export interface StorageRef {
  kind: 'storage';
  /** e.g. 'torch.HalfStorage'. */
  storageType: string;
  /** Element type of the storage ('uint8' for an UntypedStorage). */
  dtype: DType;
  /** Zip entry `<top>/data/<key>`. */
  key: string;
  location: string;
  /** Number of elements of `dtype` (bytes for an UntypedStorage). */
  numel: number;
}

/** A tensor view of a storage, as described by `_rebuild_tensor_v2` arguments (offset/stride in elements). */
export interface TensorRef {
  kind: 'tensor';
  storage: StorageRef;
  dtype: DType;
  offset: number;
  shape: number[];
  stride: number[];
  requiresGrad: boolean;
}

export function isTensorRef(v: unknown): v is TensorRef {
  return typeof v === 'object' && v !== null && (v as TensorRef).kind === 'tensor';
}

const STORAGE_DTYPES: Record<string, DType> = {
  FloatStorage: 'float32',
  HalfStorage: 'float16',
  BFloat16Storage: 'bfloat16',
  DoubleStorage: 'float64',
  LongStorage: 'int64',
  IntStorage: 'int32',
  ShortStorage: 'int16',
  CharStorage: 'int8',
  ByteStorage: 'uint8',
  BoolStorage: 'bool',
  UntypedStorage: 'uint8',
};

const DTYPE_GLOBALS: Record<string, DType> = {
  float32: 'float32',
  float: 'float32',
  float16: 'float16',
  half: 'float16',
  bfloat16: 'bfloat16',
  float64: 'float64',
  double: 'float64',
  int64: 'int64',
  long: 'int64',
  int32: 'int32',
  int: 'int32',
  int16: 'int16',
  short: 'int16',
  int8: 'int8',
  uint8: 'uint8',
  bool: 'bool',
};

type GlobalKind = 'ordereddict' | 'rebuild' | 'storage' | 'dtype' | 'tensortype' | 'codecs';

function globalKind(module: string, name: string): GlobalKind | undefined {
  if (module === 'collections' && name === 'OrderedDict') return 'ordereddict';
  if (module === 'torch._utils') {
    if (
      name === '_rebuild_tensor' ||
      name === '_rebuild_tensor_v2' ||
      name === '_rebuild_tensor_v3' ||
      name === '_rebuild_parameter' ||
      name === '_rebuild_parameter_with_state'
    ) {
      return 'rebuild';
    }
  }
  if (module === 'torch._tensor' && name === '_rebuild_from_type_v2') return 'rebuild';
  if (module === 'torch' && Object.hasOwn(STORAGE_DTYPES, name)) return 'storage';
  if (module === 'torch.storage' && name === 'UntypedStorage') return 'storage';
  if (module === 'torch' && Object.hasOwn(DTYPE_GLOBALS, name)) return 'dtype';
  if ((module === 'torch' && name === 'Tensor') || (module === 'torch.nn.parameter' && name === 'Parameter')) {
    return 'tensortype';
  }
  if (module === '_codecs' && name === 'encode') return 'codecs';
  return undefined;
}

/** Names of all pickle opcodes, for error messages. */
const OPCODE_NAMES: Record<number, string> = {
  0x28: 'MARK', 0x2e: 'STOP', 0x30: 'POP', 0x31: 'POP_MARK', 0x32: 'DUP', 0x46: 'FLOAT', 0x49: 'INT',
  0x4a: 'BININT', 0x4b: 'BININT1', 0x4c: 'LONG', 0x4d: 'BININT2', 0x4e: 'NONE', 0x50: 'PERSID',
  0x51: 'BINPERSID', 0x52: 'REDUCE', 0x53: 'STRING', 0x54: 'BINSTRING', 0x55: 'SHORT_BINSTRING',
  0x56: 'UNICODE', 0x58: 'BINUNICODE', 0x61: 'APPEND', 0x62: 'BUILD', 0x63: 'GLOBAL', 0x64: 'DICT',
  0x7d: 'EMPTY_DICT', 0x65: 'APPENDS', 0x67: 'GET', 0x68: 'BINGET', 0x69: 'INST', 0x6a: 'LONG_BINGET',
  0x6c: 'LIST', 0x5d: 'EMPTY_LIST', 0x6f: 'OBJ', 0x70: 'PUT', 0x71: 'BINPUT', 0x72: 'LONG_BINPUT',
  0x73: 'SETITEM', 0x74: 'TUPLE', 0x29: 'EMPTY_TUPLE', 0x75: 'SETITEMS', 0x47: 'BINFLOAT', 0x80: 'PROTO',
  0x81: 'NEWOBJ', 0x82: 'EXT1', 0x83: 'EXT2', 0x84: 'EXT4', 0x85: 'TUPLE1', 0x86: 'TUPLE2', 0x87: 'TUPLE3',
  0x88: 'NEWTRUE', 0x89: 'NEWFALSE', 0x8a: 'LONG1', 0x8b: 'LONG4', 0x42: 'BINBYTES', 0x43: 'SHORT_BINBYTES',
  0x8c: 'SHORT_BINUNICODE', 0x8d: 'BINUNICODE8', 0x8e: 'BINBYTES8', 0x8f: 'EMPTY_SET', 0x90: 'ADDITEMS',
  0x91: 'FROZENSET', 0x92: 'NEWOBJ_EX', 0x93: 'STACK_GLOBAL', 0x94: 'MEMOIZE', 0x95: 'FRAME',
  0x96: 'BYTEARRAY8', 0x97: 'NEXT_BUFFER', 0x98: 'READONLY_BUFFER',
};

function opName(op: number): string {
  const ch = op >= 0x20 && op < 0x7f ? String.fromCharCode(op) : `\\x${op.toString(16).padStart(2, '0')}`;
  return `'${ch}' (${OPCODE_NAMES[op] ?? 'unknown'})`;
}

/** A short Python-ish description of a value, for error messages. */
export function describe(v: unknown): string {
  if (v === null) return 'None';
  if (v instanceof PyGlobal) return `global '${v.qualname}'`;
  if (v instanceof PyTuple) return 'a tuple';
  if (v instanceof PyDict) return v.ordered ? 'an OrderedDict' : 'a dict';
  if (Array.isArray(v)) return 'a list';
  if (v instanceof Uint8Array) return 'bytes';
  if (isTensorRef(v)) return 'a tensor';
  if (typeof v === 'object' && (v as StorageRef).kind === 'storage') return 'a storage';
  if (typeof v === 'string') return 'a str';
  if (typeof v === 'number') return Number.isInteger(v) ? 'an int' : 'a float';
  if (typeof v === 'bigint') return 'an int';
  if (typeof v === 'boolean') return 'a bool';
  return typeof v;
}

const MAX_MEMO = 1 << 24;

/**
 * Unpickles a PyTorch `data.pkl`. `source` names the file in error messages (e.g. "model.pt:archive/data.pkl").
 * Every failure is a one-line MclipError.
 */
export function unpickleTorch(bytes: Uint8Array, source: string): unknown {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  const n = bytes.byteLength;
  let pos = 0;
  let opPos = 0;
  let op = 0;
  let stack: unknown[] = [];
  const marks: unknown[][] = [];
  const memo = new Map<number, unknown>();

  const fail = (msg: string): never => {
    throw new MclipError(`${source} (byte ${opPos}): ${msg}`);
  };
  const corrupt = (msg: string): never => fail(`${msg} (corrupted pickle?)`);
  const need = (k: number) => {
    if (k < 0 || pos + k > n) corrupt(`pickle data truncated in opcode ${opName(op)}`);
  };
  const u8 = () => {
    need(1);
    return bytes[pos++];
  };
  const u16 = () => {
    need(2);
    const v = dv.getUint16(pos, true);
    pos += 2;
    return v;
  };
  const u32 = () => {
    need(4);
    const v = dv.getUint32(pos, true);
    pos += 4;
    return v;
  };
  const u64 = () => {
    need(8);
    const v = dv.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(n)) corrupt(`length ${v} in opcode ${opName(op)} exceeds the pickle size`);
    return Number(v);
  };
  const take = (k: number) => {
    need(k);
    const s = bytes.subarray(pos, pos + k);
    pos += k;
    return s;
  };
  const str = (k: number) => {
    const b = take(k);
    try {
      return utf8.decode(b);
    } catch {
      return corrupt(`invalid UTF-8 string in opcode ${opName(op)}`);
    }
  };
  const line = () => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) corrupt(`unterminated line in opcode ${opName(op)}`);
    const s = str(end - pos);
    pos++;
    return s;
  };
  const pop = (): unknown => {
    if (stack.length === 0) corrupt(`pickle stack underflow in opcode ${opName(op)}`);
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length === 0) corrupt(`pickle stack underflow in opcode ${opName(op)}`);
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const items = stack;
    const prev = marks.pop();
    if (!prev) return corrupt(`pickle MARK missing for opcode ${opName(op)}`);
    stack = prev;
    return items;
  };
  const memoGet = (i: number) => {
    if (!memo.has(i)) corrupt(`pickle memo entry ${i} is undefined in opcode ${opName(op)}`);
    return memo.get(i);
  };
  const memoPut = (i: number) => {
    if (i >= MAX_MEMO) corrupt(`pickle memo index ${i} too large`);
    memo.set(i, top());
  };
  const setItems = (dict: unknown, items: unknown[]) => {
    if (!(dict instanceof PyDict)) fail(`pickle opcode ${opName(op)} on ${describe(dict)} is not allowed`);
    if (items.length % 2) corrupt(`odd number of items for opcode ${opName(op)}`);
    for (let i = 0; i < items.length; i += 2) (dict as PyDict).map.set(dictKey(items[i]), items[i + 1]);
  };
  const dictKey = (k: unknown): unknown => {
    if (k === null || ['string', 'number', 'bigint', 'boolean'].includes(typeof k) || k instanceof PyTuple) return k;
    return fail(`unhashable dict key (${describe(k)})`);
  };
  const resolveGlobal = (module: string, name: string): PyGlobal => {
    if (!globalKind(module, name)) {
      fail(
        `pickle opcode ${opName(op)} refers to global '${module}.${name}', which is not allowed ` +
          `(only PyTorch state dicts saved with torch.save(model.state_dict()) can be loaded)`,
      );
    }
    return new PyGlobal(module, name);
  };

  for (;;) {
    opPos = pos;
    if (pos >= n) corrupt('pickle data ended without STOP');
    op = bytes[pos++];
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) corrupt('unsupported pickle protocol');
        break;
      case 0x95: // FRAME (a buffering hint; the frame contents follow inline)
        u64();
        break;
      case 0x2e: // STOP
        if (marks.length) corrupt('pickle ended inside a MARK');
        return pop();
      case 0x28: // MARK
        marks.push(stack);
        stack = [];
        break;
      case 0x30: // POP
        pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4a: // BININT
        need(4);
        stack.push(dv.getInt32(pos, true));
        pos += 4;
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x8a: // LONG1
      case 0x8b: {
        // LONG4
        const len = op === 0x8a ? u8() : u32();
        if (len > 64) corrupt(`integer of ${len} bytes is too large`);
        const b = take(len);
        let v = 0n;
        for (let i = len - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
        if (len > 0 && b[len - 1] & 0x80) v -= 1n << BigInt(8 * len);
        stack.push(v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
        break;
      }
      case 0x47: // BINFLOAT (big-endian double)
        need(8);
        stack.push(dv.getFloat64(pos, false));
        pos += 8;
        break;
      case 0x58: // BINUNICODE
        stack.push(str(u32()));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(str(u8()));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(str(u64()));
        break;
      case 0x42: // BINBYTES
        stack.push(take(u32()).slice());
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(take(u8()).slice());
        break;
      case 0x8e: // BINBYTES8
        stack.push(take(u64()).slice());
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push(new PyTuple([]));
        break;
      case 0x74: {
        // TUPLE
        const items = popMark(); // (evaluate before `stack`: popMark replaces it)
        stack.push(new PyTuple(items));
        break;
      }
      case 0x85: // TUPLE1
      case 0x86: // TUPLE2
      case 0x87: {
        // TUPLE3
        const k = op - 0x84;
        if (stack.length < k) corrupt(`pickle stack underflow in opcode ${opName(op)}`);
        stack.push(new PyTuple(stack.splice(stack.length - k, k)));
        break;
      }
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x6c: {
        // LIST
        const items = popMark();
        stack.push(items);
        break;
      }
      case 0x61: {
        // APPEND
        const v = pop();
        const list = top();
        if (!Array.isArray(list)) fail(`pickle opcode ${opName(op)} on ${describe(list)} is not allowed`);
        (list as unknown[]).push(v);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        const list = top();
        if (!Array.isArray(list)) fail(`pickle opcode ${opName(op)} on ${describe(list)} is not allowed`);
        for (const it of items) (list as unknown[]).push(it);
        break;
      }
      case 0x7d: // EMPTY_DICT
        stack.push(new PyDict(false));
        break;
      case 0x64: {
        // DICT
        const d = new PyDict(false);
        setItems(d, popMark());
        stack.push(d);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x63: {
        // GLOBAL
        const module = line();
        const name = line();
        stack.push(resolveGlobal(module, name));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') corrupt('STACK_GLOBAL needs two strings');
        stack.push(resolveGlobal(module as string, name as string));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        const fn = pop();
        stack.push(reduce(fn, args));
        break;
      }
      case 0x62: {
        // BUILD
        const state = pop();
        const obj = top();
        if (obj instanceof PyDict && state instanceof PyDict) {
          obj.attrs = state; // OrderedDict._metadata: accepted and ignored
        } else {
          fail(`pickle opcode ${opName(op)} on ${describe(obj)} with ${describe(state)} state is not allowed`);
        }
        break;
      }
      case 0x51: // BINPERSID
        stack.push(persistentLoad(pop()));
        break;
      case 0x71: // BINPUT
        memoPut(u8());
        break;
      case 0x72: // LONG_BINPUT
        memoPut(u32());
        break;
      case 0x94: // MEMOIZE
        memoPut(memo.size);
        break;
      case 0x68: // BINGET
        stack.push(memoGet(u8()));
        break;
      case 0x6a: // LONG_BINGET
        stack.push(memoGet(u32()));
        break;
      default:
        if (OPCODE_NAMES[op]) {
          fail(`pickle opcode ${opName(op)} is not allowed (not needed for a PyTorch state dict)`);
        }
        corrupt(`invalid pickle opcode 0x${op.toString(16).padStart(2, '0')}`);
    }
  }

  function reduce(fn: unknown, args: unknown): unknown {
    const refuse = (): never =>
      fail(`pickle opcode ${opName(op)} on ${describe(fn)} is not allowed`);
    if (!(fn instanceof PyGlobal)) return refuse();
    if (!(args instanceof PyTuple)) {
      return fail(`pickle opcode ${opName(op)} on global '${fn.qualname}' needs a tuple of arguments, got ${describe(args)}`);
    }
    const a = args.items;
    const badArgs = (why: string): never =>
      fail(`pickle opcode ${opName(op)} on global '${fn.qualname}': ${why}`);
    switch (fn.qualname) {
      case 'collections.OrderedDict': {
        const d = new PyDict(true);
        if (a.length === 0) return d;
        // OrderedDict([(k, v), ...])
        if (a.length === 1 && Array.isArray(a[0])) {
          for (const kv of a[0] as unknown[]) {
            if (!(kv instanceof PyTuple) || kv.items.length !== 2) badArgs('expected (key, value) pairs');
            d.map.set(dictKey((kv as PyTuple).items[0]), (kv as PyTuple).items[1]);
          }
          return d;
        }
        return badArgs(`unexpected arguments (${a.map(describe).join(', ')})`);
      }
      case 'torch._utils._rebuild_tensor':
      case 'torch._utils._rebuild_tensor_v2':
      case 'torch._utils._rebuild_tensor_v3': {
        // (storage, storage_offset, size, stride[, requires_grad, backward_hooks[, dtype (v3)][, metadata]])
        const v1 = fn.name === '_rebuild_tensor';
        const v3 = fn.name === '_rebuild_tensor_v3';
        const minArgs = v1 ? 4 : v3 ? 7 : 6;
        const maxArgs = v1 ? 4 : v3 ? 8 : 7;
        if (a.length < minArgs || a.length > maxArgs) {
          badArgs(`expected ${minArgs}${maxArgs > minArgs ? `-${maxArgs}` : ''} arguments, got ${a.length}`);
        }
        const storage = a[0] as StorageRef;
        if (typeof storage !== 'object' || storage === null || storage.kind !== 'storage') {
          badArgs(`argument 0 must be a storage, got ${describe(a[0])}`);
        }
        const offset = a[1];
        if (typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < 0) {
          return badArgs(`invalid storage_offset ${String(offset)}`);
        }
        const shape = intTuple(a[2], 'size', badArgs);
        const stride = intTuple(a[3], 'stride', badArgs);
        if (shape.length !== stride.length) {
          badArgs(`size [${shape.join(', ')}] and stride [${stride.join(', ')}] differ in length`);
        }
        const requiresGrad = v1 ? false : a[4] === true;
        if (!v1) checkHooks(a[5], badArgs);
        let dtype = storage.dtype;
        if (v3) {
          const d = a[6];
          if (!(d instanceof PyGlobal) || globalKind(d.module, d.name) !== 'dtype') {
            badArgs(`argument 6 must be a torch dtype, got ${describe(d)}`);
          }
          dtype = DTYPE_GLOBALS[(d as PyGlobal).name];
          if (!storage.storageType.endsWith('.UntypedStorage') && storage.dtype !== dtype) {
            badArgs(`dtype ${dtype} does not match storage ${storage.storageType}`);
          }
        }
        const meta = a[v3 ? 7 : 6];
        if (meta !== undefined && meta !== null && !(meta instanceof PyDict)) {
          badArgs(`metadata must be a dict, got ${describe(meta)}`);
        }
        return { kind: 'tensor', storage, dtype, offset, shape, stride, requiresGrad } satisfies TensorRef;
      }
      case 'torch._utils._rebuild_parameter':
      case 'torch._utils._rebuild_parameter_with_state': {
        // (data, requires_grad, backward_hooks[, state])
        const withState = fn.name === '_rebuild_parameter_with_state';
        if (a.length !== (withState ? 4 : 3)) badArgs(`expected ${withState ? 4 : 3} arguments, got ${a.length}`);
        if (!isTensorRef(a[0])) badArgs(`argument 0 must be a tensor, got ${describe(a[0])}`);
        checkHooks(a[2], badArgs);
        return { ...(a[0] as TensorRef), requiresGrad: a[1] === true };
      }
      case 'torch._tensor._rebuild_from_type_v2': {
        // (func, new_type, args, state): func(*args) re-wrapped as new_type with __dict__ state.
        if (a.length !== 4) badArgs(`expected 4 arguments, got ${a.length}`);
        const [inner, newType, innerArgs, state] = a;
        if (!(newType instanceof PyGlobal) || globalKind(newType.module, newType.name) !== 'tensortype') {
          badArgs(`new type must be torch.Tensor or torch.nn.parameter.Parameter, got ${describe(newType)}`);
        }
        if (!(inner instanceof PyGlobal) || !inner.name.startsWith('_rebuild_tensor')) {
          badArgs(`rebuild function must be a torch._utils._rebuild_tensor*, got ${describe(inner)}`);
        }
        if (state !== null && !(state instanceof PyDict)) badArgs(`state must be a dict, got ${describe(state)}`);
        return reduce(inner, innerArgs);
      }
      case '_codecs.encode': {
        const [s, enc] = a;
        if (typeof s !== 'string' || (enc !== 'latin1' && enc !== 'latin-1')) {
          badArgs('only _codecs.encode(str, "latin1") is supported');
        }
        const out = new Uint8Array((s as string).length);
        for (let i = 0; i < out.length; i++) {
          const c = (s as string).charCodeAt(i);
          if (c > 255) badArgs('character outside latin1');
          out[i] = c;
        }
        return out;
      }
      default:
        return refuse();
    }
  }

  function persistentLoad(pid: unknown): StorageRef {
    const bad = (why: string): never => fail(`unsupported persistent id in opcode ${opName(op)}: ${why}`);
    if (!(pid instanceof PyTuple)) return bad(`expected a tuple, got ${describe(pid)}`);
    const [tag, type, key, location, count] = pid.items;
    if (tag !== 'storage' || pid.items.length !== 5) {
      return bad(`expected ('storage', type, key, location, numel), got a ${pid.items.length}-tuple tagged ${JSON.stringify(tag)}`);
    }
    if (!(type instanceof PyGlobal) || globalKind(type.module, type.name) !== 'storage') {
      return bad(`storage type must be a torch storage class, got ${describe(type)}`);
    }
    if (typeof key !== 'string' || !/^[A-Za-z0-9_.-]+$/.test(key)) return bad(`invalid storage key ${JSON.stringify(key)}`);
    if (typeof location !== 'string') return bad(`invalid storage location ${describe(location)}`);
    if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 0) {
      return bad(`invalid storage size ${String(count)}`);
    }
    return {
      kind: 'storage',
      storageType: type.qualname,
      dtype: STORAGE_DTYPES[type.name],
      key,
      location,
      numel: count,
    };
  }
}

function intTuple(v: unknown, what: string, bad: (why: string) => never): number[] {
  if (!(v instanceof PyTuple)) return bad(`${what} must be a tuple, got ${describe(v)}`);
  const out: number[] = [];
  for (const x of v.items) {
    if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0) return bad(`invalid ${what} element ${String(x)}`);
    out.push(x);
  }
  return out;
}

function checkHooks(h: unknown, bad: (why: string) => never): void {
  if (h === null || h === undefined) return;
  if (!(h instanceof PyDict)) bad(`backward_hooks must be an OrderedDict, got ${describe(h)}`);
  // Non-empty hooks would need code globals, which are refused before reaching here.
}
