/**
 * Shared helpers for the mclip wasm kernels: heap views, allocation, calling other wasm kernels,
 * a fast JS transpose and the registry plumbing (override / add, idempotently).
 *
 * Kernels here run *inside* the engine (they are kernel funcs), so they must not call `tf.*` ops:
 * they call other kernels' funcs directly on TensorInfos and free every intermediate they allocate
 * with `backend.disposeData`, exactly like the wasm backend's own composite kernels.
 */
import {
  getKernel,
  registerKernel,
  unregisterKernel,
  type DataType,
  type KernelConfig,
  type KernelFunc,
  type NamedAttrMap,
  type NamedTensorInfoMap,
  type TensorInfo,
} from '@tensorflow/tfjs-core';
import type { BackendWasm } from '@tensorflow/tfjs-backend-wasm';

export type WasmBackend = BackendWasm;
export type TypedArray = Float32Array | Int32Array | Uint8Array;

export interface KernelArgs<A = NamedAttrMap> {
  inputs: NamedTensorInfoMap;
  backend: WasmBackend;
  attrs: A;
}

let scratchElems = 8 * 1024 * 1024;

/** Largest scratch matrix (elements) a composite kernel allocates at once; larger jobs are chunked. */
export function scratchLimit(): number {
  return scratchElems;
}

/** Sets the scratch limit (elements; default 8M = 32 MB); returns the previous value. Mainly for tests. */
export function setScratchLimit(elems: number): number {
  const prev = scratchElems;
  scratchElems = Math.max(1, Math.floor(elems));
  return prev;
}

/**
 * A view on the wasm heap for `t` (no copy). Views are invalidated when the heap grows, i.e. by any
 * later allocation: take views only after the last `alloc` of the step that uses them.
 */
export function view(backend: WasmBackend, t: TensorInfo): TypedArray {
  return backend.typedArrayFromHeap(t) as TypedArray;
}

/**
 * The whole wasm heap typed as `x`'s elements, with the element offsets of `x` and `out` (same dtype) in it: for
 * kernels that copy between tensors with `copyWithin`. Take it after the last `alloc` (a heap growth detaches views).
 */
export function heapOffsets(backend: WasmBackend, x: TensorInfo, out: TensorInfo): { heap: TypedArray; src: number; dst: number } {
  const xs = view(backend, x);
  const heap = new (xs.constructor as new (b: ArrayBufferLike) => TypedArray)(xs.buffer);
  const per = xs.BYTES_PER_ELEMENT;
  return { heap, src: xs.byteOffset / per, dst: view(backend, out).byteOffset / per };
}

export function viewF32(backend: WasmBackend, t: TensorInfo): Float32Array {
  if (t.dtype !== 'float32') throw new Error(`mclip wasm kernel: expected float32, got ${t.dtype}`);
  return backend.typedArrayFromHeap(t) as Float32Array;
}

/** Allocates an (uninitialised) tensor on the wasm heap. */
export function alloc(backend: WasmBackend, shape: number[], dtype: DataType = 'float32'): TensorInfo {
  return backend.makeOutput(shape, dtype);
}

export function free(backend: WasmBackend, ...ts: (TensorInfo | null | undefined)[]): void {
  for (const t of ts) if (t != null) backend.disposeData(t.dataId);
}

/** A TensorInfo over the same data with another shape (same size). Not to be freed separately. */
export function reshaped(t: TensorInfo, shape: number[]): TensorInfo {
  return { dataId: t.dataId, shape, dtype: t.dtype };
}

/** Runs a kernel func (by default the one registered for wasm) and returns its single output. */
export function callKernel(
  name: string,
  backend: WasmBackend,
  inputs: NamedTensorInfoMap,
  attrs: NamedAttrMap = {},
  func?: KernelFunc,
): TensorInfo {
  const f = func ?? getKernel(name, 'wasm')?.kernelFunc;
  if (f == null) throw new Error(`mclip: wasm kernel ${name} is not registered`);
  const out = f({ inputs, backend, attrs });
  return Array.isArray(out) ? out[0]! : out;
}

/**
 * dst[b, c, r] = src[b, r, c] for b < B, r < R, c < C (32×32 tiles, contiguous writes; ~2.5 ns per
 * element whatever the aspect ratio). Offsets are element offsets. Any typed array kind.
 */
export function transposeBatched(
  src: TypedArray,
  srcOff: number,
  dst: TypedArray,
  dstOff: number,
  B: number,
  R: number,
  C: number,
): void {
  const T = 32;
  const RC = R * C;
  for (let b = 0; b < B; b++) {
    const so = srcOff + b * RC;
    const d0 = dstOff + b * RC;
    if (R === 1 || C === 1) {
      dst.set(src.subarray(so, so + RC), d0);
      continue;
    }
    for (let r0 = 0; r0 < R; r0 += T) {
      const r1 = r0 + T < R ? r0 + T : R;
      for (let c0 = 0; c0 < C; c0 += T) {
        const c1 = c0 + T < C ? c0 + T : C;
        for (let c = c0; c < c1; c++) {
          let di = d0 + c * R + r0;
          let si = so + r0 * C + c;
          for (let r = r0; r < r1; r++, di++, si += C) dst[di] = src[si]!;
        }
      }
    }
  }
}

/**
 * New tensor with the last two axes of `t` swapped, via the (registered) Transpose kernel, which
 * picks the faster of the wasm and the JS implementation.
 */
export function transposeLast2(backend: WasmBackend, t: TensorInfo): TensorInfo {
  const rank = t.shape.length;
  const perm = t.shape.map((_, i) => i);
  perm[rank - 2] = rank - 1;
  perm[rank - 1] = rank - 2;
  return callKernel('Transpose', backend, { x: t }, { perm });
}

// ---- registry plumbing ---------------------------------------------------------------------------

const MARK = Symbol.for('mclip.wasmKernel');

function isOurs(f: KernelFunc | undefined): boolean {
  return f != null && (f as unknown as Record<symbol, unknown>)[MARK] === true;
}

function mark(f: KernelFunc): KernelFunc {
  (f as unknown as Record<symbol, unknown>)[MARK] = true;
  return f;
}

/**
 * Registers `make(original)` as the wasm kernel `name`, replacing (and wrapping) the original one
 * if there is one. Idempotent: does nothing when our kernel is already registered. The original's
 * setup/dispose funcs are kept so the wrapped kernel works whether or not the backend has started.
 * Returns whether it (re)registered anything.
 */
export function installKernel(name: string, make: (original: KernelConfig | undefined) => KernelFunc): boolean {
  const original = getKernel(name, 'wasm') as KernelConfig | undefined;
  if (original != null && isOurs(original.kernelFunc)) return false;
  if (original != null) unregisterKernel(name, 'wasm');
  const config: KernelConfig = { kernelName: name, backendName: 'wasm', kernelFunc: mark(make(original)) };
  if (original?.setupFunc) config.setupFunc = original.setupFunc;
  if (original?.disposeFunc) config.disposeFunc = original.disposeFunc;
  registerKernel(config);
  return true;
}

/** Whether the wasm kernel `name` is one of ours. */
export function isMclipKernel(name: string): boolean {
  return isOurs((getKernel(name, 'wasm') as KernelConfig | undefined)?.kernelFunc);
}

/** Adapts a typed kernel implementation to tfjs' KernelFunc signature. */
export function asKernelFunc<A>(f: (args: KernelArgs<A>) => TensorInfo): KernelFunc {
  return (params) =>
    f({ inputs: params.inputs, backend: params.backend as WasmBackend, attrs: (params.attrs ?? {}) as unknown as A });
}
