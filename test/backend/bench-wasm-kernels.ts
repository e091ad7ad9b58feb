/**
 * Before/after timings of mclip's wasm kernels (not a test). After `npm run build`:
 *   node dist/test/backend/bench-wasm-kernels.js          # stock tfjs-backend-wasm 4.22
 *   node dist/test/backend/bench-wasm-kernels.js mclip    # with registerWasmKernels()
 * Prints the best of 5 runs per case (ms).
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { registerGradients } from '../../src/base/backend/gradients.js';
import { registerWasmKernels } from '../../src/base/backend/wasm-kernels/index.js';

const mine = process.argv[2] === 'mclip';
await registerGradients();
if (mine) registerWasmKernels();
await tf.setBackend('wasm');

function time(name: string, f: () => tf.Tensor | tf.Tensor[], n = 5): void {
  const once = () => tf.tidy(() => { const o = f(); (Array.isArray(o) ? o : [o]).forEach((t) => t.dataSync()); });
  try {
    once();
  } catch (e) {
    console.log(name.padEnd(48), 'n/a:', (e as Error).message.slice(0, 60));
    return;
  }
  let best = Infinity;
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    once();
    best = Math.min(best, performance.now() - t0);
  }
  console.log(name.padEnd(48), best.toFixed(1).padStart(8), 'ms');
}

const R = (s: number[]) => tf.randomNormal(s);
const a = R([8, 77, 512]), b = R([8, 77, 512]);
time('bmm [8,77,512] x [8,77,512]^T', () => tf.matMul(a, b, false, true));
time('bmm [8,77,512]^T x [8,77,512]', () => tf.matMul(a, b, true, false));
const c = R([512, 2048]), d = R([512, 64]);
time('mm [512,2048]^T x [512,64]', () => tf.matMul(c, d, true, false));
const e = R([2048, 512]), f = R([64, 512]);
time('mm [2048,512] x [64,512]^T', () => tf.matMul(e, f, false, true));
const xd = R([8, 77, 512]), wd = R([512, 2048]);
time('dense fwd [8,77,512] x [512,2048]', () => tf.matMul(xd, wd));
const q = R([8, 8, 77, 64]), k = R([8, 8, 77, 64]);
time('attention grad sum(softmax(q k^T) k), [8,8,77,64]', () =>
  tf.grads((q: tf.Tensor, k: tf.Tensor) => tf.sum(tf.matMul(tf.softmax(tf.matMul(q, k, false, true)), k)))([q, k]));
const x2 = R([616, 512]), w2 = R([512, 2048]);
time('grad of dense [616,512] x [512,2048]', () => tf.grads((x: tf.Tensor, w: tf.Tensor) => tf.sum(tf.matMul(x, w)))([x2, w2]));
time('transpose [512,2048]', () => tf.transpose(c));
const x = R([8, 64, 64, 64]) as tf.Tensor4D, w = R([3, 3, 64, 64]) as tf.Tensor4D;
const dy = R([8, 64, 64, 64]) as tf.Tensor4D, dy2 = R([8, 32, 32, 64]) as tf.Tensor4D;
const conv = { dataFormat: 'NHWC', filterShape: [3, 3, 64, 64] };
time('conv2d fwd 3x3 [8,64,64,64]', () => tf.conv2d(x, w, 1, 'same'), 3);
time('Conv2DBackpropFilter 3x3 s1 [8,64,64,64]', () => tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, { ...conv, strides: 1, pad: 'same' }) as tf.Tensor, 3);
time('Conv2DBackpropFilter 3x3 s2 [8,64,64,64]', () => tf.engine().runKernel('Conv2DBackpropFilter', { x, dy: dy2 }, { ...conv, strides: 2, pad: 'same' }) as tf.Tensor, 3);
time('Conv2DBackpropInput 3x3 s1 [8,64,64,64]', () => tf.conv2dTranspose(dy, w, [8, 64, 64, 64], 1, 'same'), 3);
time('Conv2DBackpropInput 3x3 s2 [8,64,64,64]', () => tf.conv2dTranspose(dy2, w, [8, 64, 64, 64], 2, 'same'), 3);
const dw3 = R([3, 3, 64, 1]) as tf.Tensor4D, dw7 = R([7, 7, 64, 1]) as tf.Tensor4D;
const dwGrad = (w: tf.Tensor4D, s: number, g: tf.Tensor) => () =>
  tf.grads((x: tf.Tensor, w: tf.Tensor) => tf.sum(tf.mul(tf.depthwiseConv2d(x as tf.Tensor4D, w as tf.Tensor4D, s, 'same'), g)))([x, w]);
time('depthwise 3x3 grad (dx,dW) [8,64,64,64]', dwGrad(dw3, 1, dy), 3);
time('depthwise 7x7 grad (dx,dW) [8,64,64,64]', dwGrad(dw7, 1, dy), 3);
time('depthwise 3x3 s2 grad (dx,dW) [8,64,64,64]', dwGrad(dw3, 2, dy2), 3);
const emb = R([49408, 512]), ids = tf.randomUniform([8, 77], 0, 49408, 'int32');
time('gather grad: embedding [49408,512], [8,77] ids', () => tf.grad((e: tf.Tensor) => tf.sum(tf.gather(e, ids)))(emb), 3);
