/**
 * A pickle byte emitter: the writing half of pickle.ts, for the state-dict pickles `torch.save` writes
 * (torch-writer.ts) and for tests that hand-craft pickles.
 *
 * The typed methods emit what CPython's pickler emits for protocol 2 (BININT1/BININT2/BININT/LONG1 by size,
 * BINUNICODE, EMPTY_TUPLE/TUPLE1-3/MARK…TUPLE, a GLOBAL memoised with BINPUT and fetched again with BINGET);
 * `str(s, 'short' | '8')`, `stackGlobal`, `memoize` and `frame` emit the protocol-4 forms. Every opcode written
 * through a method is recorded in {@link PickleWriter.opcodes}, so a caller can check what it emitted against
 * what the reader accepts; `raw` bytes (for crafting corrupt pickles) are not decoded and so not recorded.
 */

/** The opcodes this writer can emit (values as in CPython's pickle.py). */
export const OP = {
  MARK: 0x28,
  STOP: 0x2e,
  BININT: 0x4a,
  BININT1: 0x4b,
  BININT2: 0x4d,
  NONE: 0x4e,
  BINPERSID: 0x51,
  REDUCE: 0x52,
  BINUNICODE: 0x58,
  EMPTY_LIST: 0x5d,
  BUILD: 0x62,
  GLOBAL: 0x63,
  BINGET: 0x68,
  LONG_BINGET: 0x6a,
  BINPUT: 0x71,
  LONG_BINPUT: 0x72,
  SETITEM: 0x73,
  TUPLE: 0x74,
  SETITEMS: 0x75,
  EMPTY_DICT: 0x7d,
  EMPTY_TUPLE: 0x29,
  BINFLOAT: 0x47,
  PROTO: 0x80,
  TUPLE1: 0x85,
  TUPLE2: 0x86,
  TUPLE3: 0x87,
  NEWTRUE: 0x88,
  NEWFALSE: 0x89,
  LONG1: 0x8a,
  SHORT_BINUNICODE: 0x8c,
  BINUNICODE8: 0x8d,
  STACK_GLOBAL: 0x93,
  MEMOIZE: 0x94,
  FRAME: 0x95,
} as const;

/** CPython's pickler batches SETITEMS/APPENDS by this many items. */
export const BATCH_SIZE = 1000;

const utf8 = new TextEncoder();

function le(n: number, bytes: number): number[] {
  const out: number[] = [];
  let v = BigInt(n);
  for (let i = 0; i < bytes; i++) {
    out.push(Number(v & 0xffn));
    v >>= 8n;
  }
  return out;
}

export class PickleWriter {
  private chunks: Uint8Array[] = [];
  private pending: number[] = [];
  private memoCount = 0;
  private readonly globals = new Map<string, number>();
  private readonly used = new Set<number>();

  /** Opcodes emitted so far (not counting `raw` bytes). */
  get opcodes(): ReadonlySet<number> {
    return this.used;
  }

  /** Emits opcode `code` followed by `payload` bytes. */
  op(code: number, ...payload: number[]): this {
    this.used.add(code);
    this.pending.push(code);
    for (const b of payload) this.pending.push(b);
    return this;
  }

  /** Appends bytes as they are (e.g. to craft a corrupt pickle); not recorded as opcodes. */
  raw(...bytes: number[]): this {
    for (const b of bytes) this.pending.push(b);
    return this;
  }

  private append(b: Uint8Array): void {
    if (b.byteLength < 64) {
      for (const x of b) this.pending.push(x);
      return;
    }
    this.flush();
    this.chunks.push(b);
  }

  private flush(): void {
    if (this.pending.length) this.chunks.push(Uint8Array.from(this.pending));
    this.pending = [];
  }

  /** 4-byte little-endian, as pickle lengths are written. */
  u32(n: number): number[] {
    return le(n, 4);
  }

  /** 8-byte little-endian. */
  u64(n: number): number[] {
    return le(n, 8);
  }

  proto(n: number): this {
    return this.op(OP.PROTO, n);
  }
  frame(length: number): this {
    return this.op(OP.FRAME, ...this.u64(length));
  }
  mark(): this {
    return this.op(OP.MARK);
  }
  stop(): this {
    return this.op(OP.STOP);
  }
  none(): this {
    return this.op(OP.NONE);
  }
  bool(v: boolean): this {
    return this.op(v ? OP.NEWTRUE : OP.NEWFALSE);
  }

  /** A Python int: BININT1 / BININT2 / BININT when it fits (as CPython picks), else LONG1 two's complement. */
  int(n: number | bigint): this {
    if (typeof n === 'number' && !Number.isSafeInteger(n)) throw new RangeError(`pickle int: ${n} is not a safe integer`);
    const v = BigInt(n);
    if (v >= 0n && v < 256n) return this.op(OP.BININT1, Number(v));
    if (v >= 0n && v < 65536n) return this.op(OP.BININT2, ...le(Number(v), 2));
    if (v >= -(2n ** 31n) && v < 2n ** 31n) return this.op(OP.BININT, ...le(Number(BigInt.asUintN(32, v)), 4));
    const out: number[] = [];
    let x = v;
    for (;;) {
      out.push(Number(x & 0xffn));
      x >>= 8n; // arithmetic shift: -1 stays -1
      const sign = out[out.length - 1] & 0x80;
      if ((x === 0n && !sign) || (x === -1n && sign)) break;
    }
    return this.op(OP.LONG1, out.length, ...out);
  }

  /** A Python float (big-endian IEEE double). */
  float(x: number): this {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, x, false);
    return this.op(OP.BINFLOAT, ...b);
  }

  /** A str: BINUNICODE (protocol 2), or SHORT_BINUNICODE / BINUNICODE8 (protocol 4) with `kind`. */
  str(s: string, kind: 'X' | 'short' | '8' = 'X'): this {
    const b = utf8.encode(s);
    if (kind === 'short') {
      if (b.byteLength > 255) throw new RangeError('SHORT_BINUNICODE needs a string of at most 255 bytes');
      this.op(OP.SHORT_BINUNICODE, b.byteLength);
    } else if (kind === '8') {
      this.op(OP.BINUNICODE8, ...this.u64(b.byteLength));
    } else {
      this.op(OP.BINUNICODE, ...this.u32(b.byteLength));
    }
    this.append(b);
    return this;
  }

  /** GLOBAL `module.name` (protocol 2 form). */
  global(module: string, name: string): this {
    this.op(OP.GLOBAL);
    this.append(utf8.encode(`${module}\n${name}\n`));
    return this;
  }

  /** STACK_GLOBAL `module.name` (protocol 4 form: two short strings, then the opcode). */
  stackGlobal(module: string, name: string): this {
    return this.str(module, 'short').str(name, 'short').op(OP.STACK_GLOBAL);
  }

  /**
   * A global the way CPython's pickler writes it: GLOBAL + BINPUT the first time, BINGET of that memo
   * entry after (so a state dict names `_rebuild_tensor_v2` once, not once per tensor).
   */
  memoGlobal(module: string, name: string): this {
    const key = `${module}\n${name}`;
    const slot = this.globals.get(key);
    if (slot !== undefined) return this.get(slot);
    this.global(module, name);
    this.globals.set(key, this.memoCount);
    return this.put();
  }

  /** BINPUT / LONG_BINPUT the top of the stack into the next memo slot. */
  put(): this {
    const i = this.memoCount++;
    return i < 256 ? this.op(OP.BINPUT, i) : this.op(OP.LONG_BINPUT, ...this.u32(i));
  }

  /** MEMOIZE (protocol 4: the top of the stack into the next memo slot). */
  memoize(): this {
    this.memoCount++;
    return this.op(OP.MEMOIZE);
  }

  /** BINGET / LONG_BINGET memo slot `i`. */
  get(i: number): this {
    return i < 256 ? this.op(OP.BINGET, i) : this.op(OP.LONG_BINGET, ...this.u32(i));
  }

  emptyTuple(): this {
    return this.op(OP.EMPTY_TUPLE);
  }
  emptyDict(): this {
    return this.op(OP.EMPTY_DICT);
  }
  emptyList(): this {
    return this.op(OP.EMPTY_LIST);
  }
  /** TUPLE: the items since the last MARK. */
  tuple(): this {
    return this.op(OP.TUPLE);
  }
  reduce(): this {
    return this.op(OP.REDUCE);
  }
  /** BUILD (set the state of the object below: an OrderedDict's `_metadata`). */
  buildState(): this {
    return this.op(OP.BUILD);
  }
  setitem(): this {
    return this.op(OP.SETITEM);
  }
  setitems(): this {
    return this.op(OP.SETITEMS);
  }
  binpersid(): this {
    return this.op(OP.BINPERSID);
  }

  /**
   * A tuple of `n` items that `items()` pushes, as CPython writes it: EMPTY_TUPLE, TUPLE1-3, else MARK … TUPLE.
   */
  tupleOf(n: number, items: () => void): this {
    if (n === 0) return this.emptyTuple();
    if (n > 3) this.mark();
    items();
    return n > 3 ? this.tuple() : this.op(OP.TUPLE1 + n - 1);
  }

  /** A tuple of ints (sizes, strides). */
  ints(xs: readonly number[]): this {
    return this.tupleOf(xs.length, () => {
      for (const x of xs) this.int(x);
    });
  }

  /** The pickle written so far. */
  build(): Uint8Array {
    this.flush();
    if (this.chunks.length === 1) return this.chunks[0];
    const n = this.chunks.reduce((s, c) => s + c.byteLength, 0);
    const out = new Uint8Array(n);
    let p = 0;
    for (const c of this.chunks) {
      out.set(c, p);
      p += c.byteLength;
    }
    this.chunks = [out];
    return out;
  }
}
