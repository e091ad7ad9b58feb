import * as tf from '../tf.js';
import { Module, type Param } from '../nn/module.js';
import { Initializer, zeros } from '../nn/init.js';
import { torchPadding } from '../nn/functional.js';
import { fastDepthwiseConv2d } from '../nn/fast-ops.js';

export interface Conv2dOptions {
  stride?: number;
  /** Symmetric padding [ph, pw] (PyTorch semantics); defaults to ⌊k/2⌋. */
  padding?: [number, number];
  /** 1 (dense) or inChannels (depthwise, channel multiplier outChannels/inChannels). */
  groups?: number;
  bias?: boolean;
  init?: Initializer;
}

/**
 * torch.nn.Conv2d on NHWC tensors. Dense (groups = 1) weights are stored HWIO, depthwise
 * (groups = C_in) weights as [kh, kw, C_in, multiplier]; both load from/save to PyTorch OIHW.
 */
export class Conv2d extends Module {
  readonly stride: number;
  readonly padding: [number, number];

  constructor(inChannels: number, outChannels: number, kernel: number | [number, number], opts: Conv2dOptions = {}) {
    super();
    const k: [number, number] = typeof kernel === 'number' ? [kernel, kernel] : kernel;
    this.stride = opts.stride ?? 1;
    this.padding = opts.padding ?? [Math.floor(k[0] / 2), Math.floor(k[1] / 2)];
    const groups = opts.groups ?? 1;
    const init = opts.init ?? new Initializer(0);
    const [kh, kw] = k;
    if (groups === 1) {
      const fanIn = inChannels * kh * kw;
      this.addParam('weight', init.uniformFanIn([kh, kw, inChannels, outChannels], fanIn), {
        layout: 'conv',
        torchShape: [outChannels, inChannels, kh, kw],
      });
    } else if (groups === inChannels && outChannels % inChannels === 0) {
      const m = outChannels / inChannels;
      this.addParam('weight', init.uniformFanIn([kh, kw, inChannels, m], kh * kw), {
        layout: 'dwconv',
        torchShape: [outChannels, 1, kh, kw],
      });
    } else {
      throw new Error(`Conv2d: groups must be 1 or in_channels (got groups=${groups}, in=${inChannels}, out=${outChannels})`);
    }
    if (opts.bias) {
      const fanIn = (inChannels / groups) * kh * kw;
      this.addParam('bias', init.uniformFanIn([outChannels], fanIn));
    }
  }

  /** True for a depthwise weight ([kh, kw, C_in, multiplier], groups = C_in). */
  get depthwise(): boolean {
    return this.weightParam().layout === 'dwconv';
  }

  /** C_in: axis 2 of the weight in both layouts. */
  get inChannels(): number {
    return (this.weight as tf.Tensor4D).shape[2];
  }

  /** C_out: Co of a dense HWIO weight, C_in·multiplier of a depthwise one. */
  get outChannels(): number {
    const [, , ci, last] = (this.weight as tf.Tensor4D).shape;
    return this.depthwise ? ci * last : last;
  }

  /** [kh, kw] from the weight. */
  get kernel(): [number, number] {
    const [kh, kw] = (this.weight as tf.Tensor4D).shape;
    return [kh, kw];
  }

  /** 1 (dense) or C_in (depthwise), from the weight layout. */
  get groups(): number {
    return this.depthwise ? this.inChannels : 1;
  }

  get weight(): tf.Variable {
    return this.param('weight');
  }

  private weightParam(): Param {
    const p = this.ownParams.get('weight');
    if (!p) throw new Error('Conv2d has no weight');
    return p;
  }

  get bias(): tf.Variable | undefined {
    return this.ownParams.get('bias')?.variable;
  }

  /** Replaces weight (TF.js layout) and bias (or removes the bias when undefined). */
  setWeights(weight: tf.Tensor, bias: tf.Tensor | undefined): void {
    const layout = this.weightParam().layout;
    const [kh, kw, ci, last] = weight.shape;
    const torchShape = layout === 'dwconv' ? [ci * last, 1, kh, kw] : [last, ci, kh, kw];
    this.addParam('weight', weight, { layout, torchShape });
    if (bias) this.addParam('bias', bias);
    else this.removeParam('bias');
  }

  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => {
      const pad = torchPadding(this.padding[0], this.padding[1]);
      const s: [number, number] = [this.stride, this.stride];
      let y: tf.Tensor4D;
      if (this.depthwise) {
        // wasm: SIMD kernel with the bias fused (tfjs-wasm is ~10× slower on 7×7 / 1×11 kernels).
        const fast = fastDepthwiseConv2d(x as tf.Tensor4D, this.weight as tf.Tensor4D, this.bias, this.stride, pad);
        if (fast != null) return fast;
        y = tf.depthwiseConv2d(x as tf.Tensor4D, this.weight as tf.Tensor4D, s, pad);
      } else if (this.kernel[0] === 1 && this.kernel[1] === 1 && this.stride === 1) {
        // 1×1 dense conv = a plain matMul over pixels (the fast path on every backend).
        const [b, h, w, c] = x.shape;
        const m = tf.matMul(x.reshape([b * h * w, c]) as tf.Tensor2D, this.weight.reshape([c, this.outChannels]) as tf.Tensor2D);
        y = m.reshape([b, h, w, this.outChannels]);
      } else {
        y = tf.conv2d(x as tf.Tensor4D, this.weight as tf.Tensor4D, s, pad);
      }
      const b = this.bias;
      return b ? y.add(b) : y;
    });
  }
}
