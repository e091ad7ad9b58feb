/** Test helpers: hand-assemble pickles and torch-style zips (to craft valid and malicious checkpoints). */
import { zipSync } from 'fflate';

export class PickleWriter {
  private bytes: number[] = [];
  private memo = 0;

  op(code: number, ...payload: number[]): this {
    this.bytes.push(code, ...payload);
    return this;
  }
  raw(...b: number[]): this {
    this.bytes.push(...b);
    return this;
  }
  proto(n: number): this {
    return this.op(0x80, n);
  }
  mark(): this {
    return this.op(0x28);
  }
  stop(): this {
    return this.op(0x2e);
  }
  u32(n: number): number[] {
    return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
  }
  u64(n: number): number[] {
    return [...this.u32(n), 0, 0, 0, 0];
  }
  int(n: number): this {
    if (n >= 0 && n < 256) return this.op(0x4b, n);
    if (n >= 0 && n < 65536) return this.op(0x4d, n & 0xff, n >>> 8);
    return this.op(0x4a, ...this.u32(n >>> 0));
  }
  /** BINUNICODE (protocol 2), or SHORT_BINUNICODE / BINUNICODE8 with `kind`. */
  str(s: string, kind: 'X' | 'short' | '8' = 'X'): this {
    const b = [...new TextEncoder().encode(s)];
    if (kind === 'short') return this.op(0x8c, b.length, ...b);
    if (kind === '8') return this.op(0x8d, ...this.u64(b.length), ...b);
    return this.op(0x58, ...this.u32(b.length), ...b);
  }
  global(module: string, name: string): this {
    return this.op(0x63, ...new TextEncoder().encode(`${module}\n${name}\n`));
  }
  stackGlobal(module: string, name: string): this {
    return this.str(module, 'short').str(name, 'short').op(0x93);
  }
  bool(v: boolean): this {
    return this.op(v ? 0x88 : 0x89);
  }
  emptyTuple(): this {
    return this.op(0x29);
  }
  tuple(): this {
    return this.op(0x74);
  }
  reduce(): this {
    return this.op(0x52);
  }
  setitems(): this {
    return this.op(0x75);
  }
  binput(): this {
    return this.op(0x71, this.memo++ & 0xff);
  }
  memoize(): this {
    this.memo++;
    return this.op(0x94);
  }
  ints(xs: number[]): this {
    this.mark();
    for (const x of xs) this.int(x);
    return this.tuple();
  }
  frame(len: number): this {
    return this.op(0x95, ...this.u64(len));
  }
  build(): Uint8Array {
    return Uint8Array.from(this.bytes);
  }
}

export interface FakeTensor {
  name: string;
  storage: string; // e.g. 'FloatStorage'
  key: string;
  numel: number; // storage numel
  offset?: number;
  shape: number[];
  stride?: number[];
}

function contiguousStride(shape: number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

/** Emits `_rebuild_tensor_v2(('storage', torch.<storage>, key, 'cpu', numel), offset, shape, stride, False, OrderedDict())`. */
export function writeTensor(w: PickleWriter, t: FakeTensor, protocol4 = false): void {
  if (protocol4) w.stackGlobal('torch._utils', '_rebuild_tensor_v2').memoize();
  else w.global('torch._utils', '_rebuild_tensor_v2');
  w.mark();
  w.mark().str('storage', protocol4 ? 'short' : 'X');
  if (protocol4) w.stackGlobal('torch', t.storage);
  else w.global('torch', t.storage);
  w.str(t.key, protocol4 ? 'short' : 'X').str('cpu', protocol4 ? 'short' : 'X').int(t.numel).tuple().op(0x51);
  w.int(t.offset ?? 0)
    .ints(t.shape)
    .ints(t.stride ?? contiguousStride(t.shape))
    .bool(false);
  w.global('collections', 'OrderedDict').emptyTuple().reduce();
  w.tuple().reduce();
}

/** A torch-like `OrderedDict` state-dict pickle of `tensors` (protocol 2, or protocol 4 opcodes). */
export function stateDictPickle(tensors: FakeTensor[], protocol4 = false): Uint8Array {
  const w = new PickleWriter().proto(protocol4 ? 4 : 2);
  if (protocol4) w.frame(0);
  w.global('collections', 'OrderedDict').emptyTuple().reduce().binput();
  w.mark();
  for (const t of tensors) {
    w.str(t.name, protocol4 ? '8' : 'X');
    writeTensor(w, t, protocol4);
  }
  w.setitems();
  // _metadata attribute, like torch: BUILD with {'_metadata': OrderedDict()}
  w.op(0x7d).str('_metadata').global('collections', 'OrderedDict').emptyTuple().reduce().op(0x73).op(0x62);
  return w.stop().build();
}

/** A torch-style checkpoint zip (stored entries) with `<top>/data.pkl`, `<top>/data/<key>` and `<top>/version`. */
export function torchZip(top: string, pkl: Uint8Array, storages: Record<string, Uint8Array>): Uint8Array {
  const files: Record<string, Uint8Array> = { [`${top}/data.pkl`]: pkl };
  for (const [k, v] of Object.entries(storages)) files[`${top}/data/${k}`] = v;
  files[`${top}/version`] = new TextEncoder().encode('3\n');
  return zipSync(files, { level: 0 });
}

export function f32Bytes(values: number[]): Uint8Array {
  return new Uint8Array(Float32Array.from(values).buffer);
}
