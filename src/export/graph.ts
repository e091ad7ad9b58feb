/**
 * A small ONNX graph builder: nodes, initializers (raw little-endian data), typed attributes and
 * the opset-dependent spellings of a few ops (axes as attribute before opset 13/18, as input after).
 */
import { AttrType, DataType, type AttributeMsg, type DimMsg, type GraphMsg, type NodeMsg, type TensorMsg, type ValueInfoMsg } from './onnx-proto.js';

/** A typed attribute value. */
export type Attr =
  | { kind: 'int'; v: number }
  | { kind: 'float'; v: number }
  | { kind: 'ints'; v: number[] }
  | { kind: 'floats'; v: number[] }
  | { kind: 'string'; v: string };

export const ai = (v: number): Attr => ({ kind: 'int', v });
export const af = (v: number): Attr => ({ kind: 'float', v });
export const ais = (v: number[]): Attr => ({ kind: 'ints', v });
export const as = (v: string): Attr => ({ kind: 'string', v });

function toAttr(name: string, a: Attr): AttributeMsg {
  switch (a.kind) {
    case 'int':
      return { name, type: AttrType.INT, i: a.v };
    case 'float':
      return { name, type: AttrType.FLOAT, f: a.v };
    case 'ints':
      return { name, type: AttrType.INTS, ints: a.v };
    case 'floats':
      return { name, type: AttrType.FLOATS, floats: a.v };
    case 'string':
      return { name, type: AttrType.STRING, s: new TextEncoder().encode(a.v) };
  }
}

function bytesOf(a: Float32Array | Int32Array | BigInt64Array): Uint8Array {
  return new Uint8Array(a.buffer.slice(a.byteOffset, a.byteOffset + a.byteLength));
}

export class GraphBuilder {
  readonly nodes: NodeMsg[] = [];
  readonly initializers: TensorMsg[] = [];
  readonly inputs: ValueInfoMsg[] = [];
  readonly outputs: ValueInfoMsg[] = [];
  private readonly used = new Set<string>();
  private nodeCount = 0;
  private readonly i64Cache = new Map<string, string>();
  private readonly f32Cache = new Map<string, string>();

  constructor(readonly opset: number) {}

  /** A fresh, unique value name based on `base`. */
  fresh(base: string): string {
    let name = base;
    for (let i = 1; this.used.has(name); i++) name = `${base}_${i}`;
    this.used.add(name);
    return name;
  }

  /** A float32 initializer. */
  initF32(base: string, data: Float32Array, dims: number[]): string {
    const name = this.fresh(base);
    this.initializers.push({ name, dims, dataType: DataType.FLOAT, rawData: bytesOf(data) });
    return name;
  }

  /** An int64 initializer (cached by value for small shape/axes constants). */
  constI64(values: number[], dims: number[] = [values.length]): string {
    const key = `${dims.join('x')}:${values.join(',')}`;
    const hit = this.i64Cache.get(key);
    if (hit) return hit;
    const name = this.fresh(`const_i64_${values.length <= 6 ? values.join('_').replace(/-/g, 'm') : this.i64Cache.size}`);
    this.initializers.push({ name, dims, dataType: DataType.INT64, rawData: bytesOf(BigInt64Array.from(values.map((v) => BigInt(v)))) });
    this.i64Cache.set(key, name);
    return name;
  }

  /** A float32 scalar constant (cached). */
  scalarF32(v: number): string {
    const key = String(v);
    const hit = this.f32Cache.get(key);
    if (hit) return hit;
    const name = this.initF32(`const_f32_${this.f32Cache.size}`, Float32Array.of(v), []);
    this.f32Cache.set(key, name);
    return name;
  }

  /** Adds a node; returns its output names. */
  nodeN(op: string, inputs: string[], nOut: number, attrs: Record<string, Attr> = {}, base = op.toLowerCase()): string[] {
    const outs = Array.from({ length: nOut }, (_, i) => this.fresh(nOut === 1 ? base : `${base}_${i}`));
    this.nodes.push({
      name: `${op}_${this.nodeCount++}`,
      opType: op,
      input: inputs,
      output: outs,
      attribute: Object.entries(attrs).map(([k, a]) => toAttr(k, a)),
    });
    return outs;
  }

  /** Adds a single-output node; returns the output name. */
  node(op: string, inputs: string[], attrs: Record<string, Attr> = {}, base?: string): string {
    return this.nodeN(op, inputs, 1, attrs, base)[0];
  }

  // Opset-dependent helpers.

  reduceMean(x: string, axes: number[], keepdims: boolean, base?: string): string {
    if (this.opset >= 18) return this.node('ReduceMean', [x, this.constI64(axes)], { keepdims: ai(keepdims ? 1 : 0) }, base);
    return this.node('ReduceMean', [x], { axes: ais(axes), keepdims: ai(keepdims ? 1 : 0) }, base);
  }

  unsqueeze(x: string, axes: number[]): string {
    return this.node('Unsqueeze', [x, this.constI64(axes)]);
  }

  reshape(x: string, shape: number[] | string, base?: string): string {
    return this.node('Reshape', [x, typeof shape === 'string' ? shape : this.constI64(shape)], {}, base);
  }

  transpose(x: string, perm: number[], base?: string): string {
    return this.node('Transpose', [x], { perm: ais(perm) }, base);
  }

  addInput(name: string, elemType: number, dims: Array<number | string>, doc?: string): void {
    this.used.add(name);
    this.inputs.push(valueInfo(name, elemType, dims, doc));
  }

  /** Marks `value` as a graph output named `name` (through an Identity when the names differ). */
  addOutput(value: string, name: string, elemType: number, dims: Array<number | string>, doc?: string): void {
    if (value !== name) {
      this.used.add(name);
      this.nodes.push({ name: `Identity_${this.nodeCount++}`, opType: 'Identity', input: [value], output: [name], attribute: [] });
    }
    this.outputs.push(valueInfo(name, elemType, dims, doc));
  }

  toGraph(name: string, docString?: string): GraphMsg {
    return { name, node: this.nodes, initializer: this.initializers, input: this.inputs, output: this.outputs, docString };
  }
}

function valueInfo(name: string, elemType: number, dims: Array<number | string>, doc?: string): ValueInfoMsg {
  const dim: DimMsg[] = dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d }));
  return { name, type: { tensorType: { elemType, shape: { dim } } }, ...(doc ? { docString: doc } : {}) };
}
