import { beforeAll, expect, test } from 'vitest';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { CLIP } from '../../src/base/model/clip.js';
import { getConfig } from '../../src/base/model/configs.js';
import { reparameterize } from '../../src/base/model/reparameterize.js';
import { embedImages, embedTexts, type TextTokenizer } from '../../src/eval/embed.js';
import { buildClassifier, scoreZeroShot } from '../../src/eval/zero-shot.js';
import { embeddingWork, evaluateModel, type EvalPhase } from '../../src/eval/evaluate.js';
import { renderTable } from '../../src/eval/table.js';

/** Word-hash tokenizer for the tiny vocabulary (4096): SOT 4094, words, EOT 4095 (the row max), zero padding. */
const fakeTokenizer: TextTokenizer = {
  tokenize(texts, ctx = 77) {
    const out = new Int32Array(texts.length * ctx);
    texts.forEach((t, i) => {
      const words = t.toLowerCase().split(/\W+/).filter(Boolean).slice(0, ctx - 2);
      out[i * ctx] = 4094;
      words.forEach((w, j) => (out[i * ctx + 1 + j] = 1 + ([...w].reduce((h, c) => (h * 31 + c.charCodeAt(0)) >>> 0, 7) % 4000)));
      out[i * ctx + 1 + words.length] = 4095;
    });
    return out;
  },
};

beforeAll(async () => {
  await initBackend({ backend: 'wasm', quiet: true, gradients: false });
});

test('embedding in batches = one batch; classifier rows are unit vectors', async () => {
  const m = reparameterize(new CLIP(getConfig('mobileclip_tiny'), { seed: 3 }));
  const images = tf.randomUniform([6, 64, 64, 3], 0, 1, 'float32', 1) as tf.Tensor4D;
  // the folded inference weights (FoldCache) are built on first use and kept with the model
  tf.tidy(() => [m.encodeImage(tf.zeros([1, 64, 64, 3])), m.encodeText(tf.zeros([1, 77], 'int32'))]);
  const before = tf.memory().numTensors;
  const a = await embedImages(m, images, { batchSize: 4 });
  const b = await embedImages(m, images, { batchSize: 6 });
  expect(a.n).toBe(6);
  expect(a.dim).toBe(128);
  for (let i = 0; i < a.data.length; i++) expect(a.data[i]).toBeCloseTo(b.data[i], 5);
  const t = await embedTexts(m, fakeTokenizer, ['a cat', 'a dog', 'a car'], { batchSize: 2 });
  expect(t.n).toBe(3);
  const clf = await buildClassifier(m, fakeTokenizer, ['cat', 'dog', 'car'], { templates: 'simple', batchSize: 8 });
  expect(clf.numClasses).toBe(3);
  for (let c = 0; c < 3; c++) {
    let s = 0;
    for (let j = 0; j < clf.dim; j++) s += clf.weights[c * clf.dim + j] ** 2;
    expect(s).toBeCloseTo(1, 5);
  }
  const z = scoreZeroShot(a, [0, 1, 2, 0, 1, 2], clf);
  expect(z.top5).toBe(1); // k capped at 3 classes
  expect(tf.memory().numTensors).toBe(before);
  images.dispose();
  m.dispose();
});

test('evaluateModel: a full EvalRow on the tiny model', async () => {
  const m = reparameterize(new CLIP(getConfig('mobileclip_tiny'), { seed: 4 }));
  const images = tf.randomUniform([3, 64, 64, 3], 0, 1, 'float32', 2) as tf.Tensor4D;
  // the folded inference weights (FoldCache) are built on first use and kept with the model
  tf.tidy(() => [m.encodeImage(tf.zeros([1, 64, 64, 3])), m.encodeText(tf.zeros([1, 77], 'int32'))]);
  const before = tf.memory().numTensors;
  const ev = await evaluateModel('tiny', m, fakeTokenizer, {
    zeroShot: { images, labels: [0, 1, 2], classNames: ['cat', 'dog', 'car'], templates: ['a photo of a {}.', 'a {} emoji.'] },
    retrieval: { images, captions: ['a cat', 'the cat sleeps', 'a dog', 'a red car', 'cars'], textToImage: [0, 0, 1, 2, 2] },
    latency: { warmup: 1, runs: 3, batch: 2 },
  });
  expect(tf.memory().numTensors).toBe(before);
  const r = ev.row;
  expect(r.params.total).toBe(m.numParams());
  expect(r.macs.image).toBeGreaterThan(0);
  expect(r.macs.textPresent).toBeGreaterThan(0);
  expect(r.macs.textPresent!).toBeLessThan(r.macs.text);
  expect(r.zeroShot!.top1).toBeGreaterThanOrEqual(0);
  expect(r.zeroShot!.top1).toBeLessThanOrEqual(1);
  expect(r.retrieval!.i2t.r10).toBe(1); // 5 captions < 10
  expect(r.latency!.tfjs.image.bN.batch).toBe(2);
  expect(renderTable([r, { ...r, name: 'copy' }])).toContain('top1 +0.0pp');
  images.dispose();
  m.dispose();
});

test('evaluateModel progress: rows per phase add up to embeddingWork; a shared image tensor is embedded once', async () => {
  const m = reparameterize(new CLIP(getConfig('mobileclip_tiny'), { seed: 5 }));
  const images = tf.randomUniform([5, 64, 64, 3], 0, 1, 'float32', 3) as tf.Tensor4D;
  const other = images.clone();
  const zeroShot = { images, labels: [0, 1, 2, 0, 1], classNames: ['cat', 'dog', 'car'], templates: 'emoji' }; // 3 × 6 prompts
  const captions = ['a cat', 'a dog', 'a car', 'cats', 'dogs', 'a red car'];
  const seen = (): { by: Map<EvalPhase, number>; calls: EvalPhase[]; onProgress: (p: EvalPhase, n: number) => void } => {
    const by = new Map<EvalPhase, number>();
    const calls: EvalPhase[] = [];
    return { by, calls, onProgress: (p, n) => (calls.push(p), by.set(p, (by.get(p) ?? 0) + n)) };
  };
  const shared = seen();
  const retrieval = { images, captions, textToImage: [0, 1, 2, 3, 4, 4] };
  const a = await evaluateModel('a', m, fakeTokenizer, { zeroShot, retrieval, latency: { warmup: 0, runs: 1, batch: 1 }, batchSize: 2, onProgress: shared.onProgress });
  expect(Object.fromEntries(shared.by)).toEqual({ 'class prompts': 18, images: 5, captions: 6, latency: 0 });
  expect(embeddingWork({ zeroShot, retrieval })).toBe(18 + 5 + 6);
  expect(shared.calls.filter((p) => p === 'images')).toHaveLength(3); // batches of 2, 2, 1
  expect(shared.calls[shared.calls.length - 1]).toBe('latency');
  // A different tensor with the same pixels: embedded twice, same metrics.
  const separate = seen();
  const b = await evaluateModel('b', m, fakeTokenizer, { zeroShot, retrieval: { ...retrieval, images: other }, latency: false, batchSize: 2, onProgress: separate.onProgress });
  expect(Object.fromEntries(separate.by)).toEqual({ 'class prompts': 18, images: 10, captions: 6 });
  expect(embeddingWork({ zeroShot, retrieval: { ...retrieval, images: other } })).toBe(18 + 10 + 6);
  expect(b.row.zeroShot).toEqual(a.row.zeroShot);
  expect(b.row.retrieval).toEqual(a.row.retrieval);
  images.dispose();
  other.dispose();
  m.dispose();
});
