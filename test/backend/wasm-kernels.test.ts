import * as tf from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import { ADDED_WASM_KERNELS, OVERRIDDEN_WASM_KERNELS, registerWasmKernels } from '../../src/base/backend/index.js';
import { isMclipKernel, setScratchLimit } from '../../src/base/backend/wasm-kernels/index.js';
import { collapseTranspose } from '../../src/base/backend/wasm-kernels/Transpose.js';
import { leadingReduction } from '../../src/base/backend/wasm-kernels/reduce-leading.js';
import { compareBackends, gradsOf, setupBackends } from './helpers.js';

const TOL = 1e-5;
type Pad = 'valid' | 'same' | [[number, number], [number, number], [number, number], [number, number]];
const ex = (t: number, b: number, l: number, r: number): Pad => [[0, 0], [t, b], [l, r], [0, 0]];

beforeAll(setupBackends);

describe('registration', () => {
  it('registers the missing kernels and the overrides on wasm, idempotently', () => {
    for (const k of [...ADDED_WASM_KERNELS, ...OVERRIDDEN_WASM_KERNELS]) expect(isMclipKernel(k), k).toBe(true);
    expect(registerWasmKernels()).toEqual([]);
  });
});

describe('conv2d gradients (Conv2DBackpropFilter / Conv2DBackpropInput) match cpu', () => {
  const cases: [string, number[], number[], number | [number, number], Pad][] = [
    ['3x3 s1 same', [2, 9, 7, 3], [3, 3, 3, 4], 1, 'same'],
    ['3x3 s2 same', [2, 9, 8, 3], [3, 3, 3, 5], 2, 'same'],
    ['3x3 s2 valid', [1, 10, 9, 4], [3, 3, 4, 2], 2, 'valid'],
    ['3x3 s1 valid', [3, 6, 11, 2], [3, 3, 2, 3], 1, 'valid'],
    ['3x3 s2 explicit 1', [2, 8, 8, 3], [3, 3, 3, 4], 2, ex(1, 1, 1, 1)],
    ['5x5 s1 explicit asym', [2, 9, 7, 3], [5, 5, 3, 2], 1, ex(2, 1, 0, 3)],
    ['1x1 s1', [2, 5, 6, 8], [1, 1, 8, 6], 1, 'valid'],
    ['1x1 s2', [2, 7, 6, 4], [1, 1, 4, 3], 2, 'valid'],
    ['2x2 s2 (patchify)', [2, 8, 12, 3], [2, 2, 3, 6], 2, 'valid'],
    ['3x1 s[2,1] same', [2, 9, 5, 3], [3, 1, 3, 4], [2, 1], 'same'],
    ['7x7 s2 explicit 3', [1, 15, 13, 3], [7, 7, 3, 4], 2, ex(3, 3, 3, 3)],
    ['explicit pad > k-1', [1, 6, 6, 2], [3, 3, 2, 2], 1, ex(3, 0, 1, 3)],
  ];
  for (const [name, xs, ws, s, pad] of cases) {
    it(name, async () => {
      const err = await compareBackends(gradsOf((x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, s, pad)), [
        { shape: xs },
        { shape: ws },
      ]);
      expect(err).toBeLessThan(TOL);
    });
  }
  it('chunks large problems (several chunks of output rows)', async () => {
    // K = 3*3*5 = 45, OW = 7 (s1) / 4 (s2): a 700-element budget gives 2 (s1) or 3 (s2) rows per chunk
    const prev = setScratchLimit(700);
    try {
      for (const s of [1, 2]) {
        const err = await compareBackends(gradsOf((x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, s, 'same')), [
          { shape: [3, 9, 7, 5] },
          { shape: [3, 3, 5, 4] },
        ]);
        expect(err).toBeLessThan(TOL);
      }
    } finally {
      setScratchLimit(prev);
    }
  });
  it('fused conv2d (bias + relu) gradient', async () => {
    const err = await compareBackends(
      gradsOf((x, w, b) =>
        tf.fused.conv2d({ x: x as tf.Tensor4D, filter: w as tf.Tensor4D, bias: b, strides: 2, pad: 'same', activation: 'relu' }),
      ),
      [{ shape: [2, 9, 9, 3] }, { shape: [3, 3, 3, 4] }, { shape: [4] }],
    );
    expect(err).toBeLessThan(TOL);
  });
  it('conv2dTranspose forward (Conv2DBackpropInput) stride 2', async () => {
    const err = await compareBackends(
      (dy, w) => tf.conv2dTranspose(dy as tf.Tensor4D, w as tf.Tensor4D, [2, 9, 8, 3], 2, 'same'),
      [{ shape: [2, 5, 4, 4] }, { shape: [3, 3, 3, 4] }],
    );
    expect(err).toBeLessThan(TOL);
  });
});

describe('depthwiseConv2d gradients match cpu', () => {
  const cases: [string, number[], number[], number | [number, number], Pad, number?][] = [
    ['3x3 m1 s1 same', [2, 9, 7, 5], [3, 3, 5, 1], 1, 'same'],
    ['3x3 m1 s2 same', [2, 9, 8, 4], [3, 3, 4, 1], 2, 'same'],
    ['3x3 m2 s1 same', [2, 7, 9, 3], [3, 3, 3, 2], 1, 'same'],
    ['3x3 m2 s2 valid', [1, 9, 10, 3], [3, 3, 3, 2], 2, 'valid'],
    ['7x7 m1 s1 explicit 3', [2, 10, 9, 4], [7, 7, 4, 1], 1, ex(3, 3, 3, 3)],
    ['1x11 m1 s1 explicit (text RepMixer)', [2, 1, 20, 6], [1, 11, 6, 1], 1, ex(0, 0, 5, 5)],
    ['11x1 m1 s1 same', [2, 17, 3, 4], [11, 1, 4, 1], 1, 'same'],
    ['1x11 m2 s2 explicit', [2, 3, 23, 3], [1, 11, 3, 2], 2, ex(0, 0, 5, 5)],
    ['3x3 m1 s2 explicit asym', [2, 8, 8, 3], [3, 3, 3, 1], 2, ex(0, 1, 1, 0)],
    ['5x5 s1 explicit pad > k-1', [1, 6, 7, 2], [5, 5, 2, 1], 1, ex(5, 0, 0, 6)],
  ];
  for (const [name, xs, ws, s, pad] of cases) {
    it(name, async () => {
      const err = await compareBackends(
        gradsOf((x, w) => tf.depthwiseConv2d(x as tf.Tensor4D, w as tf.Tensor4D, s, pad)),
        [{ shape: xs }, { shape: ws }],
      );
      expect(err).toBeLessThan(TOL);
    });
  }
  it('dilation 2 (kernels called directly; reference: undilated 5x5 filter with zeros inserted)', async () => {
    // a 3x3 filter with dilation 2 is a 5x5 filter whose odd rows/cols are zero
    const dilated = { strides: [1, 1], dilations: [2, 2], pad: 'same' };
    const plain = { strides: [1, 1], dilations: [1, 1], pad: 'same' };
    const run = (name: string, inputs: Record<string, tf.Tensor>, attrs: object) =>
      tf.engine().runKernel(name, inputs as tf.NamedTensorMap, attrs as tf.NamedAttrMap) as tf.Tensor;
    const spread = (w: tf.Tensor) => // [3,3,C,M] -> [5,5,C,M]
      tf.slice(tf.reshape(tf.pad(tf.reshape(w, [3, 1, 3, 1, 3, 2]), [[0, 0], [0, 1], [0, 0], [0, 1], [0, 0], [0, 0]]), [6, 6, 3, 2]), [0, 0, 0, 0], [5, 5, 3, 2]);
    const filterErr = await compareBackends(
      (x, dy) => {
        if (tf.getBackend() === 'wasm') return run('DepthwiseConv2dNativeBackpropFilter', { x: x!, dy: dy! }, { ...dilated, filterShape: [3, 3, 3, 2] });
        const full = run('DepthwiseConv2dNativeBackpropFilter', { x: x!, dy: dy! }, { ...plain, filterShape: [5, 5, 3, 2] });
        return tf.stridedSlice(full, [0, 0, 0, 0], [5, 5, 3, 2], [2, 2, 1, 1]);
      },
      [{ shape: [2, 9, 8, 3] }, { shape: [2, 9, 8, 6] }],
    );
    expect(filterErr).toBeLessThan(TOL);
    const inputErr = await compareBackends(
      (dy, w) =>
        tf.getBackend() === 'wasm'
          ? run('DepthwiseConv2dNativeBackpropInput', { dy: dy!, filter: w! }, { ...dilated, inputShape: [2, 9, 8, 3] })
          : run('DepthwiseConv2dNativeBackpropInput', { dy: dy!, filter: spread(w!) }, { ...plain, inputShape: [2, 9, 8, 3] }),
      [{ shape: [2, 9, 8, 6] }, { shape: [3, 3, 3, 2] }],
    );
    expect(inputErr).toBeLessThan(TOL);
  });
  it('fused depthwise (bias + relu) gradient', async () => {
    const err = await compareBackends(
      gradsOf((x, w, b) =>
        tf.fused.depthwiseConv2d({ x: x as tf.Tensor4D, filter: w as tf.Tensor4D, bias: b, strides: 1, pad: 'same', activation: 'relu' }),
      ),
      [{ shape: [2, 6, 6, 4] }, { shape: [3, 3, 4, 1] }, { shape: [4] }],
    );
    expect(err).toBeLessThan(TOL);
  });
});

describe('matMul / batchMatMul override', () => {
  const cases: [number[], number[], boolean, boolean][] = [
    [[5, 7], [7, 3], false, false],
    [[7, 5], [7, 3], true, false],
    [[5, 7], [3, 7], false, true],
    [[7, 5], [3, 7], true, true],
    [[3, 4, 6], [3, 5, 6], false, true],
    [[3, 6, 4], [3, 6, 5], true, false],
    [[2, 3, 6, 4], [2, 3, 5, 6], true, true],
    [[3, 1, 6], [1, 5, 6], false, true], // broadcast batch
    [[1, 6], [6, 1], true, true],
    // batch folded into rows (b has batch 1): dense layer on 3-D activations
    [[4, 20, 30], [30, 25], false, false],
    [[2, 3, 20, 30], [25, 30], false, true],
    [[4, 30, 20], [1, 30, 25], true, false],
    // one XNNPACK call per batch item (M*K*N >= 4096)
    [[3, 20, 30], [3, 30, 25], false, false],
    [[3, 30, 20], [3, 25, 30], true, true],
    [[2, 2, 20, 30], [2, 2, 25, 30], false, true],
    [[1, 20, 30], [3, 30, 25], false, false], // a broadcast over b's batch
    [[20, 30], [3, 30, 25], false, false],
  ];
  for (const [as, bs, ta, tb] of cases) {
    it(`[${as}]${ta ? 'ᵀ' : ''} x [${bs}]${tb ? 'ᵀ' : ''}: forward and gradients`, async () => {
      expect(await compareBackends((a, b) => tf.matMul(a!, b!, ta, tb), [{ shape: as }, { shape: bs }])).toBeLessThan(TOL);
      if (as.slice(0, -2).join() !== bs.slice(0, -2).join()) return; // tfjs has no gradient for batch-broadcast matMul
      expect(await compareBackends(gradsOf((a, b) => tf.matMul(a!, b!, ta, tb)), [{ shape: as }, { shape: bs }])).toBeLessThan(TOL);
    });
  }
  it('fused matMul with transposes, bias and activation', async () => {
    const err = await compareBackends(
      (a, b, c) => tf.fused.matMul({ a: a!, b: b!, transposeA: true, transposeB: true, bias: c, activation: 'relu' }),
      [{ shape: [6, 4] }, { shape: [5, 6] }, { shape: [5] }],
    );
    expect(err).toBeLessThan(TOL);
    const err2 = await compareBackends(
      gradsOf((a, b, c) => tf.fused.matMul({ a: a!, b: b!, transposeB: true, bias: c, activation: 'relu' })),
      [{ shape: [4, 6] }, { shape: [5, 6] }, { shape: [5] }],
    );
    expect(err2).toBeLessThan(TOL);
    // folded batch (b batch 1, per-column bias) and not folded (scalar bias)
    for (const bias of [[25], [1]]) {
      const err3 = await compareBackends(
        (a, b, c) => tf.fused.matMul({ a: a!, b: b!, bias: c, activation: 'relu' }),
        [{ shape: [4, 20, 30] }, { shape: [1, 30, 25] }, { shape: bias }],
      );
      expect(err3).toBeLessThan(TOL);
    }
  });
});

describe('XNNPACK operator cache (keyed by tensor id) vs reshaped operands', () => {
  it('the same data used as b with another [K, N] gives correct results (stock tfjs-wasm aborts)', async () => {
    const f = (x: tf.Tensor | undefined, w: tf.Tensor | undefined, y: tf.Tensor | undefined) => {
      const r1 = tf.matMul(x!, w!); // caches an XNNPACK op for w's id as [6, 8]
      const r2 = tf.matMul(y!, tf.reshape(w!, [12, 4])); // same id, [12, 4]
      const r3 = tf.fused.matMul({ a: y!, b: tf.reshape(w!, [12, 4]), bias: tf.ones([1]), activation: 'relu' });
      const r4 = tf.matMul(tf.reshape(y!, [3, 3, 4]), tf.reshape(w!, [4, 12])); // folded batch, [4, 12]
      return tf.concat([tf.reshape(r1, [-1]), tf.reshape(r2, [-1]), tf.reshape(r3, [-1]), tf.reshape(r4, [-1])]);
    };
    expect(await compareBackends(f, [{ shape: [5, 6] }, { shape: [6, 8] }, { shape: [3, 12] }])).toBeLessThan(TOL);
  });
});

describe('Transpose override', () => {
  it('collapses perms', () => {
    expect(collapseTranspose([2, 3, 4], [0, 2, 1])).toEqual({ shape: [2, 3, 4], perm: [0, 2, 1] });
    expect(collapseTranspose([2, 3, 4, 5], [2, 3, 0, 1])).toEqual({ shape: [6, 20], perm: [1, 0] });
    expect(collapseTranspose([1, 3, 1, 5], [3, 2, 1, 0])).toEqual({ shape: [3, 5], perm: [1, 0] });
    expect(collapseTranspose([2, 3, 4, 5], [0, 2, 1, 3])).toEqual({ shape: [2, 3, 4, 5], perm: [0, 2, 1, 3] });
  });
  const cases: [number[], number[]][] = [
    [[37, 53], [1, 0]],
    [[300, 251], [1, 0]], // >= 64k elements: JS path
    [[2, 260, 257], [0, 2, 1]],
    [[5, 1, 70, 1000], [0, 3, 1, 2]],
    [[3, 37, 41], [0, 2, 1]],
    [[2, 3, 4, 5], [2, 3, 0, 1]],
    [[2, 3, 4, 5], [0, 2, 1, 3]],
    [[2, 1, 4, 5], [0, 3, 2, 1]],
    [[4, 5], [0, 1]],
    [[3, 4, 2, 7, 32], [1, 3, 0, 2, 4]], // the q/k/v gradient's perm: block copies of 32
    [[2, 3, 5, 8], [2, 0, 1, 3]], // block copies of 8
    [[2, 3, 5, 7], [2, 0, 1, 3]], // rows of 7: original kernel
  ];
  for (const [shape, perm] of cases) {
    it(`[${shape}] perm [${perm}]`, async () => {
      expect(await compareBackends((x) => tf.transpose(x!, perm), [{ shape }])).toBe(0);
      expect(await compareBackends((x) => tf.transpose(x!, perm), [{ shape, dtype: 'int32', values: Int32Array.from({ length: shape.reduce((a, b) => a * b) }, (_, i) => i) }])).toBe(0);
    });
  }
});

describe('GatherV2 override', () => {
  // [x shape, axis, indices shape, index values]
  const cases: [number[], number, number[], number[]][] = [
    [[50, 16], 0, [30], Array.from({ length: 30 }, (_, i) => (i * 7) % 50)], // rows, with repeats
    [[4, 10, 9], 1, [4], [9, 0, 3, 3]], // slices of 9 inside an outer axis
    [[4, 10, 3, 4], -3, [2, 3], [1, 1, 0, 9, 8, 2]], // negative axis, 2-D indices
    [[3, 12], 1, [5], [0, 11, 3, 3, 7]], // slice 1: the original kernel
    [[2, 5, 4], 1, [3], [4, 0, 2]], // slice 4: the original kernel
    [[6, 8], 0, [0], []], // nothing gathered
  ];
  for (const [shape, axis, ishape, idx] of cases) {
    it(`[${shape}] axis ${axis}, indices [${ishape}]`, async () => {
      const f = (x?: tf.Tensor, i?: tf.Tensor) => tf.gather(x!, i!, axis);
      const indices = { shape: ishape, dtype: 'int32' as const, values: idx };
      expect(await compareBackends(f, [{ shape }, indices])).toBe(0);
      const n = shape.reduce((a, b) => a * b);
      expect(await compareBackends(f, [{ shape, dtype: 'int32', values: Int32Array.from({ length: n }, (_, i) => i - 7) }, indices])).toBe(0);
    });
  }
  it('its gradient (UnsortedSegmentSum) matches cpu', async () => {
    const idx = [3, 0, 3, 7, 1, 1];
    const err = await compareBackends(gradsOf((x, i) => tf.gather(x!, i!, 0), 1), [{ shape: [9, 12] }, { shape: [6], dtype: 'int32', values: idx }]);
    expect(err).toBeLessThan(TOL);
  });
  it('batchDims 1 and 2 match cpu (the original kernel gets them wrong)', async () => {
    const idx = { shape: [2, 3], dtype: 'int32' as const, values: [0, 4, 4, 1, 2, 3] };
    expect(await compareBackends((x, i) => tf.gather(x!, i!, 1, 1), [{ shape: [2, 5, 8] }, idx])).toBe(0);
    expect(await compareBackends((x, i) => tf.gather(x!, i!, 1, 1), [{ shape: [2, 5, 3] }, idx])).toBe(0);
    expect(await compareBackends((x, i) => tf.gather(x!, i!, 2, 1), [{ shape: [2, 4, 5, 3] }, idx])).toBe(0);
    expect(await compareBackends((x, i) => tf.gather(x!, i!, 2, 2), [{ shape: [2, 3, 5, 2] }, { shape: [2, 3, 2], dtype: 'int32', values: [0, 4, 4, 1, 2, 3, 1, 1, 0, 2, 3, 4] }])).toBe(0);
  });
  it('an index out of range throws as the original does, and leaks nothing', async () => {
    await tf.setBackend('wasm');
    const x = tf.zeros([5, 16]);
    const before = tf.memory().numTensors;
    expect(() => tf.gather(x, tf.tensor1d([1, 5], 'int32'))).toThrow(/GatherV2: the index value 5 is not in \[0, 4\]/);
    expect(tf.memory().numTensors).toBeLessThanOrEqual(before + 1); // the indices tensor only
    x.dispose();
  });
});

describe('Slice / SplitV override (copies only the part taken)', () => {
  // [x shape, begin, size] (size −1: to the end)
  const cases: [number[], number[], number[]][] = [
    [[50, 16], [3], [7]], // leading rows: one run
    [[10, 64, 3], [2, 0, 0], [5, -1, -1]], // image batch rows: one run
    [[4, 10, 9], [1, 2, 3], [2, 5, 4]], // inner box: an odometer over two axes
    [[3, 4, 5, 6], [0, 1, 0, 2], [3, 2, 5, 3]],
    [[2, 3, 4, 5, 6], [1, 0, 2, 1, 0], [1, 3, 2, 3, 6]], // rank 5
    [[3, 8], [0, 7], [3, 1]], // run of 1
    [[7], [2], [4]],
    [[6, 8], [2, 0], [0, 8]], // nothing taken
  ];
  for (const [shape, begin, size] of cases) {
    it(`[${shape}] begin [${begin}] size [${size}]`, async () => {
      const f = (x?: tf.Tensor) => tf.slice(x!, begin, size);
      expect(await compareBackends(f, [{ shape }])).toBe(0);
      const n = shape.reduce((a, b) => a * b);
      expect(await compareBackends(f, [{ shape, dtype: 'int32', values: Int32Array.from({ length: n }, (_, i) => i - 7) }])).toBe(0);
    });
  }
  it('split (SplitV) into equal and given sizes along each axis matches cpu; the slice gradient too', async () => {
    for (const axis of [0, 1, 2, -1]) {
      expect(await compareBackends((x) => tf.concat(tf.split(x!, 2, axis).map((t, i) => t.mul(i + 1)), axis), [{ shape: [4, 6, 8] }])).toBe(0);
    }
    expect(await compareBackends((x) => tf.concat(tf.split(x!, [1, 3, -1], 1).map((t, i) => t.mul(i + 1)), 1), [{ shape: [3, 7, 2] }])).toBe(0);
    expect(await compareBackends(gradsOf((x) => tf.slice(x!, [1, 2, 0], [2, 3, -1]).square()), [{ shape: [4, 6, 5] }])).toBeLessThan(TOL);
  });
  it('bool tensors; a box outside the tensor throws; nothing leaks', async () => {
    await tf.setBackend('wasm');
    const b = tf.tensor2d([true, false, true, true, false, false], [2, 3], 'bool');
    expect(Array.from(tf.slice(b, [0, 1], [2, 2]).dataSync())).toEqual([0, 1, 0, 0]);
    const x = tf.zeros([5, 16]);
    const before = tf.memory().numTensors;
    expect(() => tf.slice(x, [3, 0], [4, 16])).toThrow();
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([b, x]);
  });
  it('taking a batch of rows does not copy the whole tensor: > 5× faster than the original kernel on [1000, 64, 64, 3]', async () => {
    await tf.setBackend('wasm');
    const x = tf.zeros([1000, 64, 64, 3]);
    const time = (f: () => tf.Tensor) => {
      const t0 = performance.now();
      for (let i = 0; i < 8; i++) f().dispose();
      return performance.now() - t0;
    };
    const ours = () => tf.slice(x, [64, 0, 0, 0], [32, 64, 64, 3]);
    // the original kernel's cost: its first step, reading the whole input out of the heap
    const original = () => {
      const b = tf.backend() as unknown as { readSync(id: object): unknown };
      b.readSync(x.dataId);
      return tf.slice(x, [64, 0, 0, 0], [32, 64, 64, 3]);
    };
    time(ours);
    const a = time(ours);
    const o = time(original);
    console.log(`slice of 32 rows from [1000, 64, 64, 3]: ${(a / 8).toFixed(2)} ms, with the whole-input read ${(o / 8).toFixed(2)} ms`);
    expect(o / a).toBeGreaterThan(5);
    x.dispose();
  });
});

describe('Sum / Mean over leading axes (override)', () => {
  it('recognises leading reductions', () => {
    expect(leadingReduction([32, 1, 77, 128], [0, 1, 2])).toEqual([2464, 128]);
    expect(leadingReduction([4, 1, 6], [0])).toEqual([4, 6]);
    expect(leadingReduction([1, 5, 6], [1])).toEqual([5, 6]);
    expect(leadingReduction([5, 1, 6], [0, 2])).toEqual([30, 1]);
    expect(leadingReduction([4, 5], -2)).toEqual([4, 5]);
    expect(leadingReduction([2, 3, 4], [1])).toBeNull();
    expect(leadingReduction([2, 3, 4], [2])).toBeNull();
    expect(leadingReduction([2, 3, 4], null)).toBeNull();
  });
  const cases: [number[], number[]][] = [
    [[32, 1, 77, 16], [0, 1, 2]],
    [[600, 37], [0]], // 37 columns: SIMD part and scalar tail
    [[64, 8, 8, 12], [0, 1, 2]],
    [[3, 9000], [0]],
    [[5000, 3], [0]],
    [[2, 3, 4], [0]], // small: original kernel
  ];
  for (const [shape, axes] of cases) {
    it(`[${shape}] over [${axes}]`, async () => {
      for (const keepDims of [false, true]) {
        expect(await compareBackends((x) => tf.sum(x!, axes, keepDims), [{ shape }])).toBeLessThan(TOL);
        expect(await compareBackends((x) => tf.mean(x!, axes, keepDims), [{ shape }])).toBeLessThan(TOL);
      }
      const prev = tf.getBackend();
      await tf.setBackend('wasm');
      const x = tf.ones(shape);
      const want = shape.map((n, i) => (axes.includes(i) ? 1 : n));
      expect(tf.sum(x, axes, true).shape).toEqual(want);
      expect(tf.mean(x, axes).shape).toEqual(shape.filter((_, i) => !axes.includes(i)));
      tf.dispose(x);
      await tf.setBackend(prev);
    });
  }
});

describe('Identity (override: shares memory)', () => {
  it('a clone outlives its source, and gradients through saved tensors are unchanged', async () => {
    const prev = tf.getBackend();
    await tf.setBackend('wasm');
    const before = tf.memory().numTensors;
    const x = tf.tensor([1, 2, 3, 4]);
    const y = x.clone();
    x.dispose();
    expect(Array.from(y.dataSync())).toEqual([1, 2, 3, 4]);
    y.dispose();
    expect(tf.memory().numTensors).toBe(before);
    await tf.setBackend(prev);
    const err = await compareBackends(gradsOf((a, b) => tf.mul(tf.square(a!), tf.sigmoid(b!))), [{ shape: [7, 9] }, { shape: [7, 9] }]);
    expect(err).toBeLessThan(TOL);
  });
});

describe('gather gradient (UnsortedSegmentSum)', () => {
  it('embedding lookup gradient, repeated and unused ids', async () => {
    const ids = [3, 0, 3, 7, 1, 3, 9, 0];
    const err = await compareBackends(gradsOf((e, i) => tf.gather(e!, i!), 1), [
      { shape: [10, 6] },
      { shape: [2, 4], dtype: 'int32', values: ids },
    ]);
    expect(err).toBeLessThan(TOL);
  });
  it('gather along axis 1', async () => {
    const err = await compareBackends(gradsOf((e, i) => tf.gather(e!, i!, 1), 1), [
      { shape: [3, 5, 4] },
      { shape: [6], dtype: 'int32', values: [4, 4, 0, 2, 1, 4] },
    ]);
    expect(err).toBeLessThan(TOL);
  });
  it('unsortedSegmentSum directly: drops out-of-range ids, 2-D ids, int32', async () => {
    const f = (x: tf.Tensor, i: tf.Tensor) => tf.unsortedSegmentSum(x, i as tf.Tensor1D, 4);
    expect(await compareBackends((x, i) => f(x!, i!), [{ shape: [6, 3] }, { shape: [6], dtype: 'int32', values: [0, 3, 3, 1, 0, 2] }])).toBeLessThan(TOL);
    expect(
      await compareBackends((x, i) => f(x!, i!), [
        { shape: [5], dtype: 'int32', values: [1, 2, 3, 4, 5] },
        { shape: [5], dtype: 'int32', values: [0, 3, 3, 1, 0] },
      ]),
    ).toBe(0);
    await tf.setBackend('wasm');
    const out = tf.tidy(() => tf.unsortedSegmentSum(tf.tensor2d([[1, 2], [3, 4]]), tf.tensor2d([[1, 9], [-1, 1]], [2, 2], 'int32') as unknown as tf.Tensor1D, 2).arraySync());
    expect(out).toEqual([0, 5]);
  });
});

describe('memory', () => {
  it('gradients inside tf.tidy leave no tensors behind', async () => {
    await tf.setBackend('wasm');
    const x = tf.randomNormal([2, 9, 8, 4]);
    const w = tf.randomNormal([3, 3, 4, 6]);
    const dw = tf.randomNormal([3, 3, 4, 2]);
    const dw1 = tf.randomNormal([1, 11, 4, 1]);
    const a = tf.randomNormal([5, 70, 20]);
    const b = tf.randomNormal([5, 30, 20]);
    const e = tf.randomNormal([10, 4]);
    const idx = tf.tensor1d([1, 2, 2, 9], 'int32');
    const before = tf.memory().numTensors;
    const beforeData = tf.engine().backend.numDataIds();
    for (let rep = 0; rep < 2; rep++) {
      tf.tidy(() => {
        const gs = [
          ...tf.grads((x: tf.Tensor, w: tf.Tensor) => tf.sum(tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 2, 'same')))([x, w]),
          ...tf.grads((x: tf.Tensor, w: tf.Tensor) => tf.sum(tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, [[0, 0], [1, 1], [1, 1], [0, 0]])))([x, w]),
          ...tf.grads((x: tf.Tensor, w: tf.Tensor) => tf.sum(tf.depthwiseConv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, 'same')))([x, dw]),
          ...tf.grads((x: tf.Tensor, w: tf.Tensor) => tf.sum(tf.depthwiseConv2d(x as tf.Tensor4D, w as tf.Tensor4D, 2, 'same')))([x, dw]),
          ...tf.grads((x: tf.Tensor, w: tf.Tensor) => tf.sum(tf.depthwiseConv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, [[0, 0], [0, 0], [5, 5], [0, 0]])))([x, dw1]),
          ...tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.matMul(a, b, false, true)))([a, b]),
          ...tf.grads((a: tf.Tensor, w: tf.Tensor) => tf.sum(tf.matMul(tf.reshape(a, [-1, 20]), w)))([a, tf.reshape(tf.slice(b, [0, 0, 0], [1, 20, 20]), [20, 20])]),
          tf.matMul(a, tf.reshape(tf.slice(b, [0, 0, 0], [1, 20, 20]), [20, 20])),
          tf.grad((e: tf.Tensor) => tf.sum(tf.gather(e, idx)))(e),
          tf.transpose(a, [0, 2, 1]),
        ];
        for (const g of gs) g.dataSync();
      });
    }
    expect(tf.memory().numTensors).toBe(before);
    expect(tf.engine().backend.numDataIds()).toBe(beforeData);
    tf.dispose([x, w, dw, dw1, a, b, e, idx]);
  });
});
