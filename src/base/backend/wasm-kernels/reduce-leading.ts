/**
 * Sum and Mean (overrides) over leading axes — the bias, LayerNorm and BatchNorm reductions of every
 * training step (e.g. [32, 1, 77, 128] over its first three axes). The wasm backend reduces only the
 * innermost axes, so it first transposes the input; here, when the reduced axes are (up to size-1
 * axes) a prefix of the shape, the input is a [rows, cols] matrix whose column sums the fast ops'
 * SIMD `col_sum_f32` computes in one pass, without the transpose (blocked float32 summation).
 * Everything else (innermost reductions, int32, mixed axes, fast ops off) goes to the original kernel.
 */
import { Mean, Sum, util, type KernelConfig, type NamedAttrMap, type TensorInfo } from '@tensorflow/tfjs-core';
import { fastColumnSum } from '../../nn/fast-ops.js';
import { alloc, asKernelFunc, callKernel, free, installKernel, type KernelArgs } from './util.js';

interface ReduceAttrs {
  axis: number | number[] | null;
  keepDims: boolean;
}

/** The reduced axes, normalised (null: all of them). */
function reducedAxes(shape: readonly number[], axes: number | readonly number[] | null): Set<number> {
  const list = axes == null ? shape.map((_, i) => i) : typeof axes === 'number' ? [axes] : [...axes];
  return new Set(util.parseAxisParam(list, [...shape]));
}

/** [rows, cols] when reducing `axes` of `shape` is summing the rows of a [rows, cols] matrix, else null. */
export function leadingReduction(shape: readonly number[], axes: number | readonly number[] | null): [number, number] | null {
  const r = shape.length;
  const set = reducedAxes(shape, axes);
  if (set.size === 0 || set.size === r) return null;
  let rows = 1;
  let cols = 1;
  let kept = false;
  for (let i = 0; i < r; i++) {
    const n = shape[i]!;
    if (set.has(i)) {
      if (kept && n !== 1) return null;
      rows *= n;
    } else {
      if (n !== 1) kept = true;
      cols *= n;
    }
  }
  return [rows, cols];
}

/** Inputs at least this large (elements) take the column-sum path. */
const MIN_ELEMS = 4096;

function install(name: typeof Sum | typeof Mean): boolean {
  return installKernel(name, (original: KernelConfig | undefined) => {
    const orig = original?.kernelFunc;
    return asKernelFunc(({ inputs, backend, attrs }: KernelArgs<ReduceAttrs>): TensorInfo => {
      const x = inputs.x!;
      const rc = x.dtype === 'float32' ? leadingReduction(x.shape, attrs.axis) : null;
      const original = () => callKernel(name, backend, inputs, attrs as unknown as NamedAttrMap, orig);
      if (rc == null || rc[0] * rc[1] < MIN_ELEMS) return original();
      const [rows, cols] = rc;
      const set = reducedAxes(x.shape, attrs.axis);
      const outShape = attrs.keepDims ? x.shape.map((n, i) => (set.has(i) ? 1 : n)) : x.shape.filter((_, i) => !set.has(i));
      const out = alloc(backend, outShape, 'float32');
      if (fastColumnSum(backend, x, out, rows, cols, name === Mean ? 1 / rows : 1)) return out;
      free(backend, out);
      return original();
    });
  });
}

export const installSum = (): boolean => install(Sum);
export const installMean = (): boolean => install(Mean);
