/**
 * Every gradient the mclip models need runs on wasm (no "kernel not registered") and matches cpu.
 * Without mclip's wasm kernels, conv2d / depthwiseConv2d / gather gradients fail on wasm with
 * "Kernel 'Conv2DBackpropFilter' | 'DepthwiseConv2dNativeBackpropInput' | 'UnsortedSegmentSum' not
 * registered for backend 'wasm'".
 */
import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { compareBackends, gradsOf, setupBackends, type Input } from './helpers.js';

beforeAll(setupBackends);

const T = (x: tf.Tensor | undefined) => x!;
const f32 = (...shape: number[]): Input => ({ shape });

const cases: [string, (...xs: tf.Tensor[]) => tf.Tensor, Input[], number?][] = [
  ['conv2d s1 same', (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, 'same'), [f32(2, 9, 7, 3), f32(3, 3, 3, 4)]],
  ['conv2d s2 valid', (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 2, 'valid'), [f32(2, 9, 7, 3), f32(3, 3, 3, 4)]],
  ['conv2d s2 explicit', (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 2, [[0, 0], [1, 1], [1, 1], [0, 0]]), [f32(2, 9, 7, 3), f32(3, 3, 3, 4)]],
  ['depthwise m1 same', (x, w) => tf.depthwiseConv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, 'same'), [f32(2, 9, 7, 3), f32(3, 3, 3, 1)]],
  ['depthwise 1x11 m2 s2', (x, w) => tf.depthwiseConv2d(x as tf.Tensor4D, w as tf.Tensor4D, 2, [[0, 0], [0, 0], [5, 5], [0, 0]]), [f32(2, 9, 17, 3), f32(1, 11, 3, 2)]],
  ['matMul', (a, b) => tf.matMul(T(a), T(b)), [f32(4, 5), f32(5, 6)]],
  ['batchMatMul transposeB', (a, b) => tf.matMul(T(a), T(b), false, true), [f32(2, 4, 5), f32(2, 6, 5)]],
  ['gather (embedding)', (e, i) => tf.gather(T(e), T(i)), [f32(5, 3), { shape: [4], dtype: 'int32', values: [0, 2, 2, 1] }], 1],
  ['layerNorm', (x) => { const m = tf.mean(T(x), -1, true); const d = tf.sub(T(x), m); return tf.mul(d, tf.rsqrt(tf.add(tf.mean(tf.square(d), -1, true), 1e-5))); }, [f32(3, 8)]],
  ['gelu (erf)', (x) => tf.mul(tf.mul(T(x), tf.add(tf.erf(tf.div(T(x), Math.SQRT2)), 1)), 0.5), [f32(3, 8)]],
  ['sigmoid', (x) => tf.sigmoid(T(x)), [f32(3, 8)]],
  ['tanh', (x) => tf.tanh(T(x)), [f32(3, 8)]],
  ['softmax', (x) => tf.softmax(T(x)), [f32(3, 8)]],
  ['logSoftmax', (x) => tf.logSoftmax(T(x)), [f32(3, 8)]],
  ['relu / relu6', (x) => tf.add(tf.relu(T(x)), tf.relu6(tf.mul(T(x), 4))), [f32(3, 8)]],
  ['avgPool', (x) => tf.avgPool(x as tf.Tensor4D, 2, 2, 'valid'), [f32(2, 8, 8, 3)]],
  ['maxPool', (x) => tf.maxPool(x as tf.Tensor4D, 3, 2, 'same'), [f32(2, 8, 8, 3)]],
  ['mean (global pool)', (x) => tf.mean(T(x), [1, 2]), [f32(2, 8, 8, 3)]],
  ['concat / slice / pad / transpose', (x) => tf.transpose(tf.pad(tf.concat([T(x), tf.slice(T(x), [0, 1], [3, 4])], 1), [[1, 1], [2, 0]])), [f32(3, 8)]],
  ['split / stack / unstack / tile', (x) => tf.tile(tf.stack(tf.unstack(tf.split(T(x), [3, 5], 1)[1]!)), [2, 1]), [f32(3, 8)]],
  ['maximum / minimum', (a, b) => tf.add(tf.maximum(T(a), T(b)), tf.mul(tf.minimum(T(a), T(b)), 2)), [f32(3, 8), f32(3, 8)]],
  ['log / exp / sqrt / pow', (x) => tf.add(tf.log(tf.add(tf.exp(T(x)), 1)), tf.pow(tf.sqrt(tf.add(tf.square(T(x)), 1)), tf.scalar(1.5))), [f32(3, 8)]],
  ['l2 normalize', (x) => tf.div(T(x), tf.norm(T(x), 'euclidean', -1, true)), [f32(3, 8)]],
  ['batchNorm', (x, m, v, o, s) => tf.batchNorm(T(x), T(m), tf.add(tf.abs(T(v)), 0.5), T(o), T(s), 1e-3), [f32(2, 4, 4, 3), f32(3), f32(3), f32(3), f32(3)]],
  ['moments', (x) => tf.moments(T(x), [0, 1, 2]).variance, [f32(2, 4, 4, 3)]],
  ['max / abs / clip', (x) => tf.add(tf.max(T(x), -1), tf.sum(tf.add(tf.abs(T(x)), tf.clipByValue(T(x), -0.5, 0.5)), -1)), [f32(3, 8)]],
  ['broadcast add / mul / div / sub', (a, b) => tf.div(tf.mul(tf.add(T(a), T(b)), T(a)), tf.add(tf.square(tf.sub(T(b), 3)), 1)), [f32(3, 8), f32(8)]],
  ['resizeBilinear', (x) => tf.image.resizeBilinear(x as tf.Tensor4D, [6, 6]), [f32(1, 4, 4, 2)]],
  ['fused matMul (bias, gelu-free relu)', (a, b, c) => tf.fused.matMul({ a: T(a), b: T(b), bias: T(c), activation: 'relu' }), [f32(4, 5), f32(5, 6), f32(6)]],
  ['cross-entropy (oneHot · logSoftmax)', (x) => tf.mul(tf.oneHot(tf.tensor1d([1, 2, 0], 'int32'), 8), tf.logSoftmax(T(x))), [f32(3, 8)]],
];

describe('gradients of the ops the models use: wasm vs cpu', () => {
  for (const [name, f, inputs, nFloat] of cases) {
    it(name, async () => {
      expect(await compareBackends(gradsOf(f, nFloat), inputs)).toBeLessThan(1e-5);
    });
  }
});
