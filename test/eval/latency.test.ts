import { beforeAll, expect, test } from 'vitest';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { CLIP } from '../../src/base/model/clip.js';
import { getConfig } from '../../src/base/model/configs.js';
import { reparameterize } from '../../src/base/model/reparameterize.js';
import { measureLatency, quantile, summarize, timeFn } from '../../src/eval/latency.js';

beforeAll(async () => {
  await initBackend({ backend: 'wasm', quiet: true, gradients: false });
});

test('quantile / summarize', () => {
  expect(quantile([1, 2, 3, 4], 0.5)).toBe(2.5);
  expect(quantile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], 0.9)).toBe(10);
  const s = summarize([5, 1, 3], 1, 0);
  expect(s).toMatchObject({ medianMs: 3, minMs: 1, maxMs: 5, runs: 3, meanMs: 3 });
});

test('timeFn disposes outputs', async () => {
  const x = tf.ones([4, 4]);
  const before = tf.memory().numTensors;
  const s = await timeFn(() => x.add(1), { warmup: 1, runs: 5 });
  expect(s.runs).toBe(5);
  expect(tf.memory().numTensors).toBe(before);
  x.dispose();
});

test('tiny model: ≥ 30 timed runs per tower and batch, finite, no leaks', async () => {
  const m = reparameterize(new CLIP(getConfig('mobileclip_tiny')));
  // the folded inference weights (FoldCache) are built on first use and kept with the model
  tf.tidy(() => [m.encodeImage(tf.zeros([1, 64, 64, 3])), m.encodeText(tf.zeros([1, 77], 'int32'))]);
  const before = tf.memory().numTensors;
  const l = await measureLatency(m, { warmup: 1, runs: 30, batch: 2 });
  expect(tf.memory().numTensors).toBe(before);
  expect(l.backend).toBe('wasm');
  expect(l.threads).toBeGreaterThanOrEqual(1);
  for (const tower of [l.image, l.text]) {
    for (const [s, b] of [
      [tower.b1, 1],
      [tower.bN, 2],
    ] as const) {
      expect(s.batch).toBe(b);
      expect(s.runs).toBeGreaterThanOrEqual(30);
      for (const v of [s.medianMs, s.p90Ms, s.meanMs, s.minMs, s.maxMs]) {
        expect(Number.isFinite(v)).toBe(true);
        expect(v).toBeGreaterThan(0);
      }
      expect(s.p90Ms).toBeGreaterThanOrEqual(s.medianMs);
    }
  }
  m.dispose();
});
