/**
 * Identity (override): the wasm backend's Identity copies its input, and tfjs calls it for every
 * tensor a gradient saves (`saveTensorsForBackwardMode` clones each one) — ~2,400 activation copies per
 * `mobileclip_tiny` training step, ~5 % of it. No kernel writes into its inputs, so, as the cpu backend
 * does, the output shares the input's memory (one more reference; Reshape does the same).
 */
import { Identity, type KernelConfig, type TensorInfo } from '@tensorflow/tfjs-core';
import { asKernelFunc, callKernel, installKernel, type KernelArgs } from './util.js';

export function installIdentity(): boolean {
  return installKernel(Identity, (original: KernelConfig | undefined) => {
    const orig = original?.kernelFunc;
    return asKernelFunc(({ inputs, backend, attrs }: KernelArgs<Record<string, never>>): TensorInfo => {
      const x = inputs.x!;
      if (x.dtype === 'string') return callKernel(Identity, backend, inputs, attrs, orig);
      backend.incRef(x.dataId);
      return { dataId: x.dataId, shape: [...x.shape], dtype: x.dtype };
    });
  });
}
