/**
 * Fast wasm-backend kernels for the ops where tfjs-backend-wasm (4.x) is slowest on MobileCLIP:
 *
 *  - depthwise conv, bias fused: tfjs-wasm runs kernels XNNPACK has no micro-kernel for (7×7,
 *    1×11) at ~0.6 GMAC/s, this one at ~10 GMAC/s; it also beats XNNPACK's 3×3 (~1.6×);
 *  - exact-erf GELU in one pass (tf.erf alone is a slow scalar loop), and its gradient;
 *  - the attention q/k/v split (tfjs-wasm's Slice copies its whole input each call) and LayerNorm
 *    (nine small ops) in one pass each.
 *
 * The kernels are WebAssembly SIMD (fast-ops.c, embedded as fast-ops-wasm.ts) instantiated on the
 * wasm backend's own WebAssembly.Memory, so they read and write tensors in place (no copies). They
 * are registered as tfjs kernels ('MclipDepthwiseConv2d', 'MclipGelu', 'MclipGeluGrad',
 * 'MclipQkvSplit', 'MclipLayerNorm') with gradients, so they show up in tf.profile, work under tidy
 * and train.
 *
 * Used only when the active backend is 'wasm' and the module could be instantiated on its memory
 * (otherwise, or with MCLIP_FAST_OPS=0 / setFastOps(false), callers fall back to plain tf ops;
 * MCLIP_FAST_OPS=dwconv,gelu,qkv,layernorm,reduce,adamw picks some).
 * Results equal the tf ops up to float rounding (summation order; GELU's erf to ~1e-7).
 */
import * as tf from '../tf.js';
import type { Padding2D } from './functional.js';
import { FAST_OPS_WASM } from './fast-ops-wasm.js';

interface FastOpsExports {
  dwconv_f32(
    x: number, w: number, bias: number, y: number, n: number, h: number, wd: number, c: number,
    kh: number, kw: number, s: number, padT: number, padL: number, ho: number, wo: number, m: number,
  ): void;
  gelu_f32(x: number, y: number, n: number): void;
  gelu_grad_f32(x: number, dy: number, dx: number, n: number): void;
  qkv_split_f32(qkv: number, q: number, k: number, v: number, b: number, n: number, h: number, d: number, scale: number): void;
  layer_norm_f32(x: number, w: number, b: number, y: number, mean: number, rstd: number, rows: number, c: number, eps: number): void;
  col_sum_f32(x: number, y: number, rows: number, cols: number, scale: number): void;
  adamw_f32(
    p: number, g: number, m: number, v: number, po: number, mo: number, vo: number, n: number,
    sign: number, b1: number, c1: number, b2: number, c2: number, decay: number, bc1: number, bc2: number, eps: number, lr: number,
  ): void;
}

/** The parts of tfjs-backend-wasm's BackendWasm used here. */
interface WasmBackendLike {
  wasm: { asm?: { memory?: unknown }; wasmExports?: { memory?: unknown }; wasmMemory?: unknown };
  dataIdMap: { get(dataId: object): { memoryOffset: number } | undefined };
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
}

/** The bits of the WebAssembly JS API used here (the project's TS lib has no WebAssembly typings). */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
}
type WasmModule = object;
interface WasmApi {
  Memory: abstract new (...args: never[]) => WasmMemory;
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (mod: WasmModule, imports: object) => { exports: object };
  validate(bytes: Uint8Array): boolean;
}
const WA = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;

export const DW_KERNEL = 'MclipDepthwiseConv2d';
export const GELU_KERNEL = 'MclipGelu';
export const GELU_GRAD_KERNEL = 'MclipGeluGrad';
export const QKV_SPLIT_KERNEL = 'MclipQkvSplit';
export const LAYER_NORM_KERNEL = 'MclipLayerNorm';
export const ADAMW_KERNEL = 'MclipAdamW';

let wasmModule: WasmModule | null | undefined;
const instances = new WeakMap<WasmMemory, FastOpsExports>();
const failed = new WeakSet<object>();
/** The fast ops by name (for setFastOps / MCLIP_FAST_OPS). */
export type FastOp = 'dwconv' | 'gelu' | 'qkv' | 'layernorm' | 'reduce' | 'adamw';
const ALL_OPS: readonly FastOp[] = ['dwconv', 'gelu', 'qkv', 'layernorm', 'reduce', 'adamw'];

function parseEnv(v: string | undefined): Set<FastOp> {
  if (v == null || v.trim() === '' || v === '1') return new Set(ALL_OPS);
  if (v === '0') return new Set();
  return new Set(v.split(',').map((s) => s.trim().toLowerCase()).filter((s): s is FastOp => (ALL_OPS as readonly string[]).includes(s)));
}

let enabled = parseEnv((globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.MCLIP_FAST_OPS);

/**
 * Turns the fast kernels on or off: all of them (true / false) or just the listed ones (default all;
 * MCLIP_FAST_OPS=0 starts with none, MCLIP_FAST_OPS=dwconv,gelu with those). Returns the previous set.
 */
export function setFastOps(on: boolean | readonly FastOp[]): FastOp[] {
  const prev = [...enabled];
  enabled = new Set(on === true ? ALL_OPS : on === false ? [] : on);
  return prev;
}

function compiled(): WasmModule | null {
  if (wasmModule !== undefined) return wasmModule;
  wasmModule = null;
  if (WA == null) return null;
  try {
    const bytes = Uint8Array.from(atob(FAST_OPS_WASM), (ch) => ch.charCodeAt(0));
    if (WA.validate(bytes)) wasmModule = new WA.Module(bytes);
  } catch {
    wasmModule = null; // no WebAssembly SIMD
  }
  return wasmModule;
}

function exportsFor(backend: unknown): FastOpsExports | null {
  if (backend == null || typeof backend !== 'object' || failed.has(backend)) return null;
  const b = backend as Partial<WasmBackendLike>;
  const mem = b.wasm?.asm?.memory ?? b.wasm?.wasmExports?.memory ?? b.wasm?.wasmMemory;
  if (WA == null || !(mem instanceof WA.Memory) || b.dataIdMap == null) {
    failed.add(backend);
    return null;
  }
  let ex = instances.get(mem);
  if (ex == null) {
    const mod = compiled();
    if (mod == null) {
      failed.add(backend);
      return null;
    }
    try {
      ex = new WA.Instance(mod, { env: { memory: mem } }).exports as unknown as FastOpsExports;
    } catch {
      failed.add(backend);
      return null;
    }
    instances.set(mem, ex);
  }
  return ex;
}

/** True when the fast kernels can run on the active backend. */
export function fastOpsAvailable(op?: FastOp): boolean {
  if ((op != null ? !enabled.has(op) : enabled.size === 0) || tf.getBackend() !== 'wasm') return false;
  registerFastKernels();
  return exportsFor(tf.backend()) != null;
}

function ptr(backend: WasmBackendLike, t: tf.TensorInfo): number {
  return backend.dataIdMap.get(t.dataId)!.memoryOffset;
}

/**
 * out[c] = scale · Σ_r x[r, c], x seen as [rows, cols] (float32, both on the wasm heap), for the
 * wasm backend's Sum / Mean overrides (src/base/backend/wasm-kernels/reduce-leading.ts). Returns false,
 * having done nothing, when the fast ops are off or unavailable on `backend`.
 */
export function fastColumnSum(backend: unknown, x: tf.TensorInfo, out: tf.TensorInfo, rows: number, cols: number, scale: number): boolean {
  if (!enabled.has('reduce')) return false;
  const ex = exportsFor(backend);
  if (ex == null) return false;
  const be = backend as WasmBackendLike;
  ex.col_sum_f32(ptr(be, x), ptr(be, out), rows, cols, scale);
  return true;
}

interface DwAttrs {
  strides: [number, number];
  pad: Padding2D | 'valid';
  dilations: [number, number];
}

function dwKernel({ inputs, backend, attrs }: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs: tf.NamedAttrMap }): tf.TensorInfo {
  const be = backend as WasmBackendLike;
  const ex = exportsFor(backend);
  if (ex == null) throw new Error(`${DW_KERNEL}: fast ops unavailable on this backend`);
  const { x, filter, bias } = inputs as { x: tf.TensorInfo; filter: tf.TensorInfo; bias?: tf.TensorInfo };
  const a = attrs as unknown as DwAttrs;
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    filter.shape as [number, number, number, number],
    a.strides, a.dilations, a.pad, undefined, true,
  );
  const [n, h, w, c] = x.shape;
  const [kh, kw, , m] = filter.shape;
  const out = be.makeOutput([n, info.outHeight, info.outWidth, c * m], 'float32');
  if (n * info.outHeight * info.outWidth * c * m > 0) {
    ex.dwconv_f32(
      ptr(be, x), ptr(be, filter), bias ? ptr(be, bias) : 0, ptr(be, out),
      n, h, w, c, kh, kw, info.strideHeight, info.padInfo.top, info.padInfo.left, info.outHeight, info.outWidth, m,
    );
  }
  return out;
}

function geluKernel({ inputs, backend }: { inputs: tf.NamedTensorInfoMap; backend: unknown }): tf.TensorInfo {
  const be = backend as WasmBackendLike;
  const ex = exportsFor(backend);
  if (ex == null) throw new Error(`${GELU_KERNEL}: fast ops unavailable on this backend`);
  const { x } = inputs as { x: tf.TensorInfo };
  const out = be.makeOutput(x.shape, 'float32');
  const size = tf.util.sizeFromShape(x.shape);
  if (size > 0) ex.gelu_f32(ptr(be, x), ptr(be, out), size);
  return out;
}

function geluGradKernel({ inputs, backend }: { inputs: tf.NamedTensorInfoMap; backend: unknown }): tf.TensorInfo {
  const be = backend as WasmBackendLike;
  const ex = exportsFor(backend);
  if (ex == null) throw new Error(`${GELU_GRAD_KERNEL}: fast ops unavailable on this backend`);
  const { x, dy } = inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
  const out = be.makeOutput(x.shape, 'float32');
  const size = tf.util.sizeFromShape(x.shape);
  if (size > 0) ex.gelu_grad_f32(ptr(be, x), ptr(be, dy), ptr(be, out), size);
  return out;
}

function qkvSplitKernel({ inputs, backend, attrs }: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs: tf.NamedAttrMap }): tf.TensorInfo[] {
  const be = backend as WasmBackendLike;
  const ex = exportsFor(backend);
  if (ex == null) throw new Error(`${QKV_SPLIT_KERNEL}: fast ops unavailable on this backend`);
  const { qkv } = inputs as { qkv: tf.TensorInfo };
  const { heads, scale } = attrs as unknown as { heads: number; scale: number };
  const [b, n, c3] = qkv.shape;
  const d = c3 / 3 / heads;
  const outs = [0, 1, 2].map(() => be.makeOutput([b, heads, n, d], 'float32'));
  if (b * n * c3 > 0) ex.qkv_split_f32(ptr(be, qkv), ptr(be, outs[0]), ptr(be, outs[1]), ptr(be, outs[2]), b, n, heads, d, scale);
  return outs;
}

function layerNormKernel({ inputs, backend, attrs }: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs: tf.NamedAttrMap }): tf.TensorInfo[] {
  const be = backend as WasmBackendLike;
  const ex = exportsFor(backend);
  if (ex == null) throw new Error(`${LAYER_NORM_KERNEL}: fast ops unavailable on this backend`);
  const { x, weight, bias } = inputs as { x: tf.TensorInfo; weight: tf.TensorInfo; bias: tf.TensorInfo };
  const c = x.shape[x.shape.length - 1];
  const lead = x.shape.slice(0, -1);
  const rows = tf.util.sizeFromShape(lead);
  const y = be.makeOutput(x.shape, 'float32');
  const mean = be.makeOutput([...lead, 1], 'float32');
  const rstd = be.makeOutput([...lead, 1], 'float32');
  if (rows * c > 0) {
    ex.layer_norm_f32(ptr(be, x), ptr(be, weight), ptr(be, bias), ptr(be, y), ptr(be, mean), ptr(be, rstd), rows, c, (attrs as { eps: number }).eps);
  }
  return [y, mean, rstd];
}

/** Constants of one AdamW update (see adamw_f32 in fast-ops.c). */
export interface AdamWAttrs {
  sign: number;
  beta1: number;
  beta2: number;
  /** 1 − lr·wd, or 1 without weight decay. */
  decay: number;
  /** Bias corrections 1 − β^t. */
  bc1: number;
  bc2: number;
  eps: number;
  lr: number;
}

function adamwKernel({ inputs, backend, attrs }: { inputs: tf.NamedTensorInfoMap; backend: unknown; attrs: tf.NamedAttrMap }): tf.TensorInfo[] {
  const be = backend as WasmBackendLike;
  const ex = exportsFor(backend);
  if (ex == null) throw new Error(`${ADAMW_KERNEL}: fast ops unavailable on this backend`);
  const { p, g, m, v } = inputs as { p: tf.TensorInfo; g: tf.TensorInfo; m: tf.TensorInfo; v: tf.TensorInfo };
  const a = attrs as unknown as AdamWAttrs;
  const outs = [0, 1, 2].map(() => be.makeOutput(p.shape, 'float32'));
  const n = tf.util.sizeFromShape(p.shape);
  if (n > 0) {
    ex.adamw_f32(
      ptr(be, p), ptr(be, g), ptr(be, m), ptr(be, v), ptr(be, outs[0]), ptr(be, outs[1]), ptr(be, outs[2]), n,
      a.sign, a.beta1, 1 - a.beta1, a.beta2, 1 - a.beta2, a.decay, a.bc1, a.bc2, a.eps, a.lr,
    );
  }
  return outs;
}

let registered = false;

/** Registers the kernels (for the 'wasm' backend) and their gradients. Idempotent. */
export function registerFastKernels(): void {
  if (registered) return;
  registered = true;
  const kernels: [string, tf.KernelFunc][] = [
    [DW_KERNEL, dwKernel as unknown as tf.KernelFunc],
    [GELU_KERNEL, geluKernel as unknown as tf.KernelFunc],
    [GELU_GRAD_KERNEL, geluGradKernel as unknown as tf.KernelFunc],
    [QKV_SPLIT_KERNEL, qkvSplitKernel as unknown as tf.KernelFunc],
    [ADAMW_KERNEL, adamwKernel as unknown as tf.KernelFunc],
    [LAYER_NORM_KERNEL, layerNormKernel as unknown as tf.KernelFunc],
  ];
  for (const [kernelName, kernelFunc] of kernels) {
    if (tf.getKernel(kernelName, 'wasm') == null) tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc });
  }
  if (tf.getGradient(DW_KERNEL) == null) {
    tf.registerGradient({
      kernelName: DW_KERNEL,
      inputsToSave: ['x', 'filter'],
      gradFunc: (dy, saved, attrs) => {
        const [x, filter] = saved;
        const g = dy as tf.Tensor4D;
        const a = attrs as unknown as DwAttrs;
        const common = { strides: a.strides, pad: a.pad, dilations: a.dilations, dimRoundingMode: undefined };
        const dx = (): tf.Tensor => {
          const [kh, kw, , m] = filter.shape;
          if (a.strides[0] === 1 && a.strides[1] === 1 && m === 1 && a.pad !== 'valid' && exportsFor(tf.backend()) != null) {
            // stride 1: the input gradient is the conv of dy with the flipped kernel, padded k−1−p
            const [[, ], [pt, pb], [pl, pr]] = a.pad;
            if (pt < kh && pb < kh && pl < kw && pr < kw) {
              const flipped = tf.reverse(filter, [0, 1]);
              const pad: Padding2D = [[0, 0], [kh - 1 - pt, kh - 1 - pb], [kw - 1 - pl, kw - 1 - pr], [0, 0]];
              return tf.engine().runKernel(DW_KERNEL, { x: g, filter: flipped }, { strides: [1, 1], pad, dilations: [1, 1] } as unknown as tf.NamedAttrMap) as tf.Tensor;
            }
          }
          return tf.engine().runKernel('DepthwiseConv2dNativeBackpropInput', { dy: g, filter }, { ...common, inputShape: x.shape } as unknown as tf.NamedAttrMap) as tf.Tensor;
        };
        return {
          x: dx,
          filter: () => tf.engine().runKernel('DepthwiseConv2dNativeBackpropFilter', { x, dy: g }, { ...common, filterShape: filter.shape } as unknown as tf.NamedAttrMap) as tf.Tensor,
          bias: () => g.sum([0, 1, 2]),
        };
      },
    });
  }
  if (tf.getGradient(QKV_SPLIT_KERNEL) == null) {
    tf.registerGradient({
      kernelName: QKV_SPLIT_KERNEL,
      gradFunc: (dy, _saved, attrs) => {
        const [dq, dk, dv] = dy as tf.Tensor[];
        const { scale } = attrs as unknown as { scale: number };
        // [3, B, H, N, D] → [B, N, 3, H, D] → [B, N, 3C]
        return {
          qkv: () => {
            const [b, h, n, d] = dq.shape;
            return tf.stack([dq.mul(scale), dk, dv]).transpose([1, 3, 0, 2, 4]).reshape([b, n, 3 * h * d]);
          },
        };
      },
    });
  }
  if (tf.getGradient(LAYER_NORM_KERNEL) == null) {
    tf.registerGradient({
      kernelName: LAYER_NORM_KERNEL,
      inputsToSave: ['x', 'weight'],
      outputsToSave: [false, true, true],
      gradFunc: (dys, saved) => {
        const dy = (dys as tf.Tensor[])[0];
        const [x, w, mean, rstd] = saved;
        const axis = x.rank - 1;
        const lead = x.shape.map((_, i) => i).slice(0, -1);
        const xhat = () => x.sub(mean).mul(rstd);
        return {
          x: () => {
            const xh = xhat();
            const g = dy.mul(w);
            return g.sub(g.mean(axis, true)).sub(xh.mul(g.mul(xh).mean(axis, true))).mul(rstd);
          },
          weight: () => dy.mul(xhat()).sum(lead),
          bias: () => dy.sum(lead),
        };
      },
    });
  }
  if (tf.getGradient(GELU_KERNEL) == null) {
    tf.registerGradient({
      kernelName: GELU_KERNEL,
      inputsToSave: ['x'],
      gradFunc: (dy, saved) => ({ x: () => tf.engine().runKernel(GELU_GRAD_KERNEL, { x: saved[0], dy: dy as tf.Tensor }) as tf.Tensor }),
    });
  }
}

/**
 * Depthwise conv (+ bias) on the fast kernel, or null when it does not apply (backend, dtype,
 * channel multiplier other than 1 / 2, channels·multiplier not a multiple of 4, unequal strides).
 * x [N, H, W, C], filter [kh, kw, C, M], bias [C·M].
 */
export function fastDepthwiseConv2d(
  x: tf.Tensor4D,
  filter: tf.Tensor4D,
  bias: tf.Tensor | undefined,
  stride: number,
  pad: Padding2D | 'valid',
): tf.Tensor4D | null {
  const m = filter.shape[3];
  const c = x.shape[3];
  if ((m !== 1 && m !== 2) || ((c * m) & 3) !== 0 || x.dtype !== 'float32' || filter.dtype !== 'float32') return null;
  if (bias != null && (bias.dtype !== 'float32' || bias.size !== c * m)) return null;
  if (!fastOpsAvailable('dwconv')) return null;
  const attrs: DwAttrs = { strides: [stride, stride], pad, dilations: [1, 1] };
  const inputs: tf.NamedTensorMap = bias != null ? { x, filter, bias: bias.rank === 1 ? bias : bias.reshape([c * m]) } : { x, filter };
  return tf.engine().runKernel(DW_KERNEL, inputs, attrs as unknown as tf.NamedAttrMap) as tf.Tensor4D;
}

/** Exact GELU on the fast kernel (its gradient too), or null when it does not apply. */
export function fastGelu(x: tf.Tensor): tf.Tensor | null {
  if (x.dtype !== 'float32' || !fastOpsAvailable('gelu')) return null;
  return tf.engine().runKernel(GELU_KERNEL, { x }) as tf.Tensor;
}

/**
 * Multi-head q/k/v split of qkv [B, N, 3C] (laid out [3, heads, d]) into q (times `scale`), k, v
 * [B, heads, N, d] in one pass, or null when it does not apply.
 */
export function fastQkvSplit(qkv: tf.Tensor, heads: number, scale: number): [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D] | null {
  if (qkv.rank !== 3 || qkv.dtype !== 'float32' || (qkv.shape[2] as number) % (3 * heads) !== 0 || !fastOpsAvailable('qkv')) return null;
  return tf.engine().runKernel(QKV_SPLIT_KERNEL, { qkv }, { heads, scale }) as unknown as [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D];
}

/** LayerNorm over the last axis in one pass (its gradient registered), or null when it does not apply. */
export function fastLayerNorm(x: tf.Tensor, weight: tf.Tensor, bias: tf.Tensor, eps: number): tf.Tensor | null {
  const c = x.shape[x.rank - 1];
  if (x.rank < 1 || x.dtype !== 'float32' || weight.dtype !== 'float32' || bias.dtype !== 'float32') return null;
  if (weight.size !== c || bias.size !== c || !fastOpsAvailable('layernorm')) return null;
  const w = weight.rank === 1 ? weight : weight.reshape([c]);
  const b = bias.rank === 1 ? bias : bias.reshape([c]);
  const [y, mean, rstd] = tf.engine().runKernel(LAYER_NORM_KERNEL, { x, weight: w, bias: b }, { eps }) as unknown as tf.Tensor[];
  mean.dispose();
  rstd.dispose();
  return y;
}

/**
 * One AdamW update on the fast kernel: the new parameter, first and second moment, bit-identical to
 * the tf-op update of adamw.ts; null when it does not apply (backend, dtype, fast ops off).
 */
export function fastAdamW(p: tf.Tensor, g: tf.Tensor, m: tf.Tensor, v: tf.Tensor, attrs: AdamWAttrs): [tf.Tensor, tf.Tensor, tf.Tensor] | null {
  if ([p, g, m, v].some((t) => t.dtype !== 'float32' || t.size !== p.size) || !fastOpsAvailable('adamw')) return null;
  return tf.engine().runKernel(ADAMW_KERNEL, { p, g, m, v }, attrs as unknown as tf.NamedAttrMap) as unknown as [tf.Tensor, tf.Tensor, tf.Tensor];
}
