import * as tf from '../tf.js';
import { Module, Sequential } from '../nn/module.js';
import { Initializer } from '../nn/init.js';
import { ReparamLargeKernelConv } from './reparam-large-kernel-conv.js';
import { MobileOneBlock } from './mobileone-block.js';

/**
 * PatchEmbed (downsampler between MCi stages): `proj.0` = ReparamLargeKernelConv(C_in → C_out,
 * 7×7, stride 2, groups C_in, small kernel 3, optional SE), `proj.1` = MobileOneBlock 1×1.
 */
export class PatchEmbed extends Module {
  constructor(inC: number, outC: number, opts: { patchSize: number; stride: number; useSe: boolean; seWidth?: number; inferenceMode?: boolean; init?: Initializer }) {
    super();
    const init = opts.init ?? new Initializer(0);
    this.addModule(
      'proj',
      new Sequential([
        new ReparamLargeKernelConv(inC, outC, {
          kernelSize: opts.patchSize,
          stride: opts.stride,
          groups: inC,
          smallKernel: 3,
          useSe: opts.useSe,
          seWidth: opts.seWidth,
          inferenceMode: opts.inferenceMode,
          init,
        }),
        new MobileOneBlock(outC, outC, 1, { stride: 1, padding: [0, 0], groups: 1, inferenceMode: opts.inferenceMode, init }),
      ]),
    );
  }

  get proj(): Sequential {
    return this.childAs('proj', Sequential);
  }

  forward(x: tf.Tensor): tf.Tensor {
    return this.sub('proj').call(x);
  }
}
