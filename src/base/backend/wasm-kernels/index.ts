/**
 * mclip's additions to the tfjs wasm backend (4.22) so that every model trains on it:
 *
 *  missing kernels:  Conv2DBackpropFilter, DepthwiseConv2dNativeBackpropFilter,
 *                    DepthwiseConv2dNativeBackpropInput, UnsortedSegmentSum (gather / embedding grad)
 *  faster overrides: BatchMatMul, _FusedMatMul (explicit transpose instead of the slow transposed
 *                    path), Conv2DBackpropInput (via Conv2D / matmul + col2im), Transpose (2-D case,
 *                    block copies), Identity (shares memory instead of copying), Sum and Mean
 *                    (over leading axes, without the transpose), GatherV2 (block copies of whole slices),
 *                    Slice and SplitV (copy only the part taken, not the whole input first)
 */
import { installBatchMatMul } from './BatchMatMul.js';
import { installConv2DBackpropFilter } from './Conv2DBackpropFilter.js';
import { installConv2DBackpropInput } from './Conv2DBackpropInput.js';
import { installDepthwiseConv2dNativeBackpropFilter } from './DepthwiseConv2dNativeBackpropFilter.js';
import { installDepthwiseConv2dNativeBackpropInput } from './DepthwiseConv2dNativeBackpropInput.js';
import { installFusedMatMul } from './FusedMatMul.js';
import { installGatherV2 } from './GatherV2.js';
import { installIdentity } from './Identity.js';
import { installMean, installSum } from './reduce-leading.js';
import { installSlice, installSplitV } from './Slice.js';
import { installTranspose } from './Transpose.js';
import { installUnsortedSegmentSum } from './UnsortedSegmentSum.js';

/** Kernels the wasm backend lacks and mclip adds. */
export const ADDED_WASM_KERNELS = [
  'Conv2DBackpropFilter',
  'DepthwiseConv2dNativeBackpropFilter',
  'DepthwiseConv2dNativeBackpropInput',
  'UnsortedSegmentSum',
] as const;

/** Kernels the wasm backend has and mclip replaces with faster versions (wrapping the originals). */
export const OVERRIDDEN_WASM_KERNELS = ['BatchMatMul', '_FusedMatMul', 'Conv2DBackpropInput', 'Transpose', 'Identity', 'Sum', 'Mean', 'GatherV2', 'Slice', 'SplitV'] as const;

/**
 * Registers mclip's wasm kernels. Idempotent; safe before or after the wasm backend initialises.
 * Requires `@tensorflow/tfjs-backend-wasm` to have been imported (so its kernels are registered).
 * Returns the names of the kernels registered by this call (empty when already done).
 */
export function registerWasmKernels(): string[] {
  const steps: [string, () => boolean][] = [
    ['Transpose', installTranspose],
    ['Identity', installIdentity],
    ['Sum', installSum],
    ['Mean', installMean],
    ['GatherV2', installGatherV2],
    ['Slice', installSlice],
    ['SplitV', installSplitV],
    ['BatchMatMul', installBatchMatMul],
    ['_FusedMatMul', installFusedMatMul],
    ['Conv2DBackpropInput', installConv2DBackpropInput],
    ['Conv2DBackpropFilter', installConv2DBackpropFilter],
    ['DepthwiseConv2dNativeBackpropFilter', installDepthwiseConv2dNativeBackpropFilter],
    ['DepthwiseConv2dNativeBackpropInput', installDepthwiseConv2dNativeBackpropInput],
    ['UnsortedSegmentSum', installUnsortedSegmentSum],
  ];
  return steps.filter(([, install]) => install()).map(([name]) => name);
}

export { isMclipKernel, setScratchLimit } from './util.js';
