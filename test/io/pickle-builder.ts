/**
 * Test helpers: hand-assemble pickles and torch-style zips (to craft valid and malicious checkpoints), on top of
 * the writer that `mclip convert --to pt` uses (src/base/io/pickle-writer.ts, torch-writer.ts). What stays here
 * is what only tests need: views with offsets and strides over shared storages, the protocol-4 encoding, and
 * torch's `_metadata` BUILD.
 */
import { PickleWriter } from '../../src/base/io/pickle-writer.js';
import { pickleTensor, torchArchiveBytes } from '../../src/base/io/torch-writer.js';

export { PickleWriter };

export interface FakeTensor {
  name: string;
  storage: string; // e.g. 'FloatStorage'
  key: string;
  numel: number; // storage numel
  offset?: number;
  shape: number[];
  stride?: number[];
}

/**
 * Emits `_rebuild_tensor_v2(('storage', torch.<storage>, key, 'cpu', numel), offset, shape, stride, False, OrderedDict())`:
 * as the writer does (protocol 2), or with protocol-4 opcodes (STACK_GLOBAL, MEMOIZE, SHORT_BINUNICODE).
 */
export function writeTensor(w: PickleWriter, t: FakeTensor, protocol4 = false): void {
  const stride = t.stride;
  if (!protocol4) {
    pickleTensor(w, { name: t.name, storageClass: t.storage, key: t.key, numel: t.numel, offset: t.offset, shape: t.shape, stride });
    return;
  }
  w.stackGlobal('torch._utils', '_rebuild_tensor_v2').memoize();
  w.mark();
  w.mark().str('storage', 'short').stackGlobal('torch', t.storage);
  w.str(t.key, 'short').str('cpu', 'short').int(t.numel).tuple().binpersid();
  w.int(t.offset ?? 0).ints(t.shape);
  if (stride) w.ints(stride);
  else w.ints(t.shape.map((_, i) => t.shape.slice(i + 1).reduce((a, b) => a * b, 1)));
  w.bool(false).stackGlobal('collections', 'OrderedDict').emptyTuple().reduce();
  w.tuple().reduce();
}

/** A torch-like `OrderedDict` state-dict pickle of `tensors` with its `_metadata` (protocol 2, or protocol 4 opcodes). */
export function stateDictPickle(tensors: FakeTensor[], protocol4 = false): Uint8Array {
  const w = new PickleWriter().proto(protocol4 ? 4 : 2);
  if (protocol4) w.frame(0);
  w.global('collections', 'OrderedDict').emptyTuple().reduce().put();
  w.mark();
  for (const t of tensors) {
    w.str(t.name, protocol4 ? '8' : 'X');
    writeTensor(w, t, protocol4);
  }
  w.setitems();
  // _metadata attribute, like torch: BUILD with {'_metadata': OrderedDict()}
  w.emptyDict().str('_metadata').global('collections', 'OrderedDict').emptyTuple().reduce().setitem().buildState();
  return w.stop().build();
}

/** A torch-style checkpoint zip (stored, aligned entries) with `<top>/data.pkl`, `<top>/data/<key>` and `<top>/version`. */
export function torchZip(top: string, pkl: Uint8Array, storages: Record<string, Uint8Array>): Uint8Array {
  return torchArchiveBytes(top, pkl, Object.entries(storages));
}

export function f32Bytes(values: number[]): Uint8Array {
  return new Uint8Array(Float32Array.from(values).buffer);
}
