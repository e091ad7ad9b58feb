/**
 * _FusedMatMul (override): same problems as BatchMatMul in the wasm backend (XNNPACK only without
 * transposes and with batch 1). Materialise the transposes and fold a's batch into its rows when b
 * has batch 1 (and the bias, if any, is per output column); otherwise the original kernel.
 * A [1] bias is expanded to [N]: the stock kernel's XNNPACK path reads N bias values regardless.
 */
import {
  _FusedMatMul,
  type _FusedMatMulAttrs,
  type KernelConfig,
  type NamedAttrMap,
  type TensorInfo,
} from '@tensorflow/tfjs-core';
import { foldedMatMul, freshIfReused, plainOperands } from './BatchMatMul.js';
import { alloc, asKernelFunc, callKernel, free, installKernel, reshaped, viewF32, type KernelArgs } from './util.js';

export function installFusedMatMul(): boolean {
  return installKernel(_FusedMatMul, (original: KernelConfig | undefined) => {
    if (original == null) throw new Error('mclip: the wasm backend has no _FusedMatMul kernel to wrap');
    const orig = original.kernelFunc;
    return asKernelFunc(({ inputs, backend, attrs }: KernelArgs<_FusedMatMulAttrs>): TensorInfo => {
      const { a, b, bias } = inputs as { a: TensorInfo; b: TensorInfo; bias?: TensorInfo };
      const ops = plainOperands(backend, a, b, attrs.transposeA, attrs.transposeB);
      try {
        if (!ops.plain) return callKernel(_FusedMatMul, backend, inputs, attrs as unknown as NamedAttrMap, orig);
        const plainAttrs = { ...attrs, transposeA: false, transposeB: false } as unknown as NamedAttrMap;
        const N = ops.b.shape[ops.b.shape.length - 1]!;
        // The XNNPACK path reads N bias values: expand a broadcast [1] bias (stock tfjs reads past it).
        let bias2 = bias;
        if (bias != null && bias.dtype === 'float32' && bias.shape.length === 1 && bias.shape[0] === 1 && N !== 1) {
          bias2 = alloc(backend, [N]);
          ops.temps.push(bias2);
          viewF32(backend, bias2).fill(viewF32(backend, bias)[0]!);
        }
        const fusedInputs = bias2 == null ? inputs : { ...inputs, bias: bias2 };
        const run = (x: TensorInfo, y: TensorInfo) => callKernel(_FusedMatMul, backend, { ...fusedInputs, a: x, b: y }, plainAttrs, orig);
        const biasOk = bias2 == null || (bias2.shape.length === 1 && bias2.shape[0] === N);
        const folded = biasOk ? foldedMatMul(backend, ops.a, ops.b, run) : null;
        if (folded != null) return folded;
        const bRank = ops.b.shape.length;
        const xnn = ops.b.shape.slice(0, -2).every((d) => d === 1) && ops.a.shape.slice(0, -2).every((d) => d === 1);
        // both batch 1: the original runs XNNPACK, whose op cache must not see a reshaped b
        const b = xnn ? freshIfReused(backend, reshaped(ops.b, [1, ops.b.shape[bRank - 2]!, N]), ops.temps) : ops.b;
        return run(ops.a, b);
      } finally {
        free(backend, ...ops.temps);
      }
    });
  });
}
