/**
 * The project's `tf.tidy` (src/base/tf.ts): plain data returned from a scope comes back as is, without tfjs's
 * per-element search for tensors, and the scope's tensors are still disposed; tensors returned are kept.
 */
import * as tfc from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import * as tf from '../../src/base/tf.js';
import { setupBackends } from './helpers.js';

beforeAll(setupBackends);

describe('tf.tidy', () => {
  it('returns a typed array, numbers and nested arrays as they are, and disposes the scope', () => {
    const before = tf.memory().numTensors;
    const a = tf.tidy(() => tf.range(0, 10).mul(2).dataSync() as Float32Array);
    expect(Array.from(a)).toEqual(Array.from({ length: 10 }, (_, i) => 2 * i));
    const n = tf.tidy('named', () => tf.scalar(3).add(4).dataSync()[0]!);
    expect(n).toBe(7);
    const m = tf.tidy(() => tf.eye(2).arraySync() as number[][]);
    expect(m).toEqual([[1, 0], [0, 1]]);
    const pair = tf.tidy(() => [tf.ones([3]).dataSync() as Float32Array, tf.zeros([2]).dataSync() as Float32Array]);
    expect(pair.map((x) => Array.from(x))).toEqual([[1, 1, 1], [0, 0]]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('keeps the tensors a scope returns, alone or in containers, and disposes the rest', () => {
    const before = tf.memory().numTensors;
    const t = tf.tidy(() => tf.ones([2]).add(1));
    const o = tf.tidy(() => ({ a: tf.ones([2]).mul(3), b: [tf.zeros([1]).add(5)], n: 1 }));
    expect(tf.memory().numTensors).toBe(before + 3);
    expect(Array.from(t.dataSync())).toEqual([2, 2]);
    expect(Array.from(o.a.dataSync())).toEqual([3, 3]);
    expect(Array.from(o.b[0]!.dataSync())).toEqual([5]);
    tf.dispose([t, o.a, o.b[0]!]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('reads a large typed array back far faster than tfjs’s own tidy (which searches it element by element)', () => {
    const n = 300_000;
    const time = (f: () => void) => {
      const t0 = performance.now();
      f();
      return performance.now() - t0;
    };
    const x = tf.ones([n]);
    tf.tidy(() => x.mul(1).dataSync()); // warm-up
    const ours = Math.min(...[0, 1, 2].map(() => time(() => tf.tidy(() => x.mul(1).dataSync() as Float32Array))));
    const theirs = time(() => tfc.tidy(() => x.mul(1).dataSync() as Float32Array));
    x.dispose();
    expect(theirs / ours).toBeGreaterThan(5);
  });
});
