/**
 * BatchMatMul (override). The wasm kernel (tfjs 4.22, batch_mat_mul_impl.cc) only uses XNNPACK
 * (~25 GFLOP/s) when there is no transpose AND both operands have batch 1; everything else runs a
 * naive blocked loop (~1–2 GFLOP/s, and 10–17× slower still when transposed). matMul's gradients
 * always transpose, and x[B,T,K]·W[K,N] (every dense layer on 3-D activations) has batch B.
 *
 *  1. transposeA / transposeB: transpose the operand explicitly (cache-blocked JS copy, O(size));
 *  2. b has batch 1: fold a's batch into its rows ([1, B·M, K] · [1, K, N]) → one XNNPACK call;
 *  3. batched both (attention), batch sizes 1 or B: one XNNPACK call per batch item (each b slice
 *     is a fresh tensor, since XNNPACK caches packed weights by tensor id);
 *  4. anything else (int32, odd broadcasts, tiny problems): the original kernel.
 * Also guards against XNNPACK's id-keyed operator cache being hit with a reshaped b (see bDims).
 */
import {
  BatchMatMul,
  broadcast_util,
  type BatchMatMulAttrs,
  type KernelConfig,
  type KernelFunc,
  type NamedAttrMap,
  type TensorInfo,
} from '@tensorflow/tfjs-core';
import {
  alloc,
  asKernelFunc,
  callKernel,
  free,
  installKernel,
  reshaped,
  transposeLast2,
  viewF32,
  type KernelArgs,
  type WasmBackend,
} from './util.js';

const NO_T = { transposeA: false, transposeB: false };

/** Per-batch XNNPACK calls only pay off above this many multiply-adds per batch item. */
const PER_BATCH_MIN_MACS = 4096;

function prod(s: number[]): number {
  return s.reduce((p, q) => p * q, 1);
}

export interface PlainOperands {
  a: TensorInfo;
  b: TensorInfo;
  /** true when the transposes were materialised (operands are plain [.., M, K] · [.., K, N]) */
  plain: boolean;
  temps: TensorInfo[];
}

/** Materialises the transposes of float32 operands. Caller frees `temps`. */
export function plainOperands(backend: WasmBackend, a: TensorInfo, b: TensorInfo, tA: boolean, tB: boolean): PlainOperands {
  const temps: TensorInfo[] = [];
  const f32 = a.dtype === 'float32' && b.dtype === 'float32';
  if (!f32) return { a, b, plain: !tA && !tB, temps };
  const a2 = tA ? transposeLast2(backend, a) : a;
  if (tA) temps.push(a2);
  const b2 = tB ? transposeLast2(backend, b) : b;
  if (tB) temps.push(b2);
  return { a: a2, b: b2, plain: true, temps };
}

/**
 * XNNPACK's operator cache in the wasm backend is keyed by b's tensor id (+ bias id, activation),
 * NOT by shape, and packs b on first use. tfjs reshapes share the data id, so the same id can come
 * back as b with other [K, N] (e.g. a gradient reshaped between a dense and a conv layer) and would
 * silently reuse the stale packed op. Remember the [K, N] each data id was used with; when it
 * differs, use a fresh copy of b.
 */
const bDims = new WeakMap<object, string>();

export function freshIfReused(backend: WasmBackend, b3: TensorInfo, temps: TensorInfo[]): TensorInfo {
  const key = `${b3.shape[1]},${b3.shape[2]}`;
  const seen = bDims.get(b3.dataId);
  if (seen === undefined) {
    bDims.set(b3.dataId, key);
    return b3;
  }
  if (seen === key) return b3;
  const copy = alloc(backend, b3.shape, b3.dtype);
  viewF32(backend, copy).set(viewF32(backend, b3));
  temps.push(copy);
  bDims.set(copy.dataId, key);
  return copy;
}

/**
 * a[.., M, K] · b[.., K, N] with plain operands: folds a's batch when b has batch 1. Returns null
 * when that doesn't apply.
 */
export function foldedMatMul(
  backend: WasmBackend,
  a: TensorInfo,
  b: TensorInfo,
  run: (a3: TensorInfo, b3: TensorInfo) => TensorInfo,
): TensorInfo | null {
  const M = a.shape[a.shape.length - 2]!;
  const K = a.shape[a.shape.length - 1]!;
  const N = b.shape[b.shape.length - 1]!;
  if (prod(b.shape.slice(0, -2)) !== 1) return null;
  const outBatch = broadcast_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
  const temps: TensorInfo[] = [];
  try {
    const b3 = freshIfReused(backend, reshaped(b, [1, K, N]), temps);
    const out = run(reshaped(a, [1, prod(a.shape.slice(0, -2)) * M, K]), b3);
    out.shape = [...outBatch, M, N];
    return out;
  } finally {
    free(backend, ...temps);
  }
}

function perBatchMatMul(backend: WasmBackend, a: TensorInfo, b: TensorInfo, orig: KernelFunc): TensorInfo | null {
  const M = a.shape[a.shape.length - 2]!;
  const K = a.shape[a.shape.length - 1]!;
  const N = b.shape[b.shape.length - 1]!;
  const batchA = prod(a.shape.slice(0, -2));
  const batchB = prod(b.shape.slice(0, -2));
  const outBatch = broadcast_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
  const B = prod(outBatch);
  if (M * K * N < PER_BATCH_MIN_MACS || batchB !== B || (batchA !== B && batchA !== 1)) return null;
  const out = alloc(backend, [...outBatch, M, N]);
  try {
    for (let i = 0; i < B; i++) {
      const ai = batchA === 1 ? reshaped(a, [1, M, K]) : alloc(backend, [1, M, K]);
      const bi = alloc(backend, [1, K, N]); // fresh id each time: XNNPACK caches packed weights by b's id
      if (batchA !== 1) viewF32(backend, ai).set(viewF32(backend, a).subarray(i * M * K, (i + 1) * M * K));
      viewF32(backend, bi).set(viewF32(backend, b).subarray(i * K * N, (i + 1) * K * N));
      let oi: TensorInfo;
      try {
        oi = callKernel(BatchMatMul, backend, { a: ai, b: bi }, NO_T, orig);
      } finally {
        if (batchA !== 1) free(backend, ai);
        free(backend, bi);
      }
      viewF32(backend, out).set(viewF32(backend, oi), i * M * N);
      free(backend, oi);
    }
  } catch (e) {
    free(backend, out);
    throw e;
  }
  return out;
}

export function installBatchMatMul(): boolean {
  return installKernel(BatchMatMul, (original: KernelConfig | undefined) => {
    if (original == null) throw new Error('mclip: the wasm backend has no BatchMatMul kernel to wrap');
    const orig = original.kernelFunc;
    return asKernelFunc(({ inputs, backend, attrs }: KernelArgs<BatchMatMulAttrs>): TensorInfo => {
      const { a, b } = inputs as { a: TensorInfo; b: TensorInfo };
      const ops = plainOperands(backend, a, b, attrs.transposeA, attrs.transposeB);
      try {
        if (!ops.plain) return callKernel(BatchMatMul, backend, inputs, attrs as unknown as NamedAttrMap, orig);
        const run = (x: TensorInfo, y: TensorInfo) => callKernel(BatchMatMul, backend, { a: x, b: y }, NO_T, orig);
        return (
          foldedMatMul(backend, ops.a, ops.b, run) ??
          perBatchMatMul(backend, ops.a, ops.b, orig) ??
          run(ops.a, ops.b) // slow path, which XNNPACK's cache doesn't touch
        );
      } finally {
        free(backend, ...ops.temps);
      }
    });
  });
}
