import { afterAll, beforeAll, describe, expect, test, vi } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { applyAug, DatasetBuilder, readDrDataset, rgbToPng, decodePng, type DrSample, type RgbImage } from '../../src/base/data/index.js';
import { ClipTokenizer, trainVocab, writeVocab } from '../../src/base/tokenizer/index.js';
import { CLIP, l2normalize } from '../../src/base/model/clip.js';
import { getConfig } from '../../src/base/model/configs.js';
import { loadModel, saveModel } from '../../src/base/model/checkpoint.js';
import { exportOnnx } from '../../src/export/index.js';
import { runReinforce, type ReinforceArgs } from '../../src/cli/commands/reinforce.js';

const D = 128;
const AUGS = 3;
const SIZE = 64;

function norm(x: Float32Array): number {
  return Math.sqrt(x.reduce((a, v) => a + v * v, 0));
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function toFloat(img: RgbImage, nchw: boolean): Float32Array {
  const hw = img.width * img.height;
  const out = new Float32Array(3 * hw);
  for (let p = 0; p < hw; p++) for (let c = 0; c < 3; c++) out[nchw ? c * hw + p : p * 3 + c] = img.data[p * 3 + c] / 255;
  return out;
}

async function readAll(dir: string): Promise<DrSample[]> {
  const out: DrSample[] = [];
  for await (const s of readDrDataset(dir)) out.push(s);
  return out;
}

function files(dir: string): Record<string, string> {
  return Object.fromEntries(
    readdirSync(dir)
      .sort()
      .map((f) => [f, `${statSync(join(dir, f)).mtimeMs}:${readFileSync(join(dir, f)).toString('base64')}`]),
  );
}

describe('mclip reinforce', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mclip-reinforce-'));
  // checkpoint teachers run in onnxruntime by default: their ONNX export cache stays in the test's folder
  const savedCache = process.env.MCLIP_CACHE_DIR;
  process.env.MCLIP_CACHE_DIR = join(dir, 'cache');
  afterAll(() => {
    if (savedCache === undefined) delete process.env.MCLIP_CACHE_DIR;
    else process.env.MCLIP_CACHE_DIR = savedCache;
    rmSync(dir, { recursive: true, force: true });
  });
  const captions = new Map<string, { caption: string; captions: string[] }>();
  let vocabSize = 0;

  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true, gradients: false });
    const b = new DatasetBuilder(join(dir, 'data'), { splits: ['train'], samplesPerShard: 3 });
    const colors: [string, [number, number, number]][] = [
      ['red', [220, 30, 30]],
      ['green', [30, 200, 40]],
      ['blue', [30, 40, 220]],
      ['gray', [128, 128, 128]],
      ['yellow', [220, 220, 30]],
    ];
    for (let k = 0; k < colors.length; k++) {
      const [name, rgb] = colors[k];
      const w = 48;
      const h = 40;
      const px = new Uint8Array(w * h * 3);
      for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) px.set([(rgb[0] + 3 * x) % 256, (rgb[1] + 4 * y) % 256, (rgb[2] + x * y) % 256], (y * w + x) * 3);
      const syn = k === 1 ? [`${name}`] : [`${name}`, `the color ${name}`, `a ${name} thing`];
      captions.set(`s${k}`, { caption: `a ${name} square`, captions: syn });
      await b.add('train', `s${k}`, { image: await rgbToPng(px, w, h), caption: `a ${name} square`, captions: syn, labels: { category: name } });
    }
    await b.close({ name: 'colors', image: { width: 48, height: 40 } });
    const texts = colors.flatMap(([c]) => [`a ${c} square`, `the color ${c}`, `a ${c} thing`, c]);
    const vocab = trainVocab([...texts, ...Array.from({ length: 200 }, (_, i) => `word${i} thing${i % 7}`)], 600);
    writeVocab(join(dir, 'vocab'), vocab);
    vocabSize = ClipTokenizer.fromDir(join(dir, 'vocab')).vocabSize;
    for (const [i, file] of [
      [0, 't1.safetensors'],
      [1, 't2.onnx'],
    ] as const) {
      const cfg = getConfig('mobileclip_tiny');
      cfg.text.vocabSize = vocabSize;
      const m = new CLIP(cfg, { seed: 11 + i });
      m.eval();
      if (i === 0) saveModel(m, join(dir, file));
      else await exportOnnx(m, join(dir, file), { tower: 'both' });
      m.dispose();
    }
  });

  const args = (): ReinforceArgs => ({
    data: join(dir, 'data'),
    split: 'train',
    teacher: [join(dir, 't1.safetensors'), join(dir, 't2.onnx')],
    teacherScale: [100, 70],
    augs: AUGS,
    out: join(dir, 'dr'),
    vocab: join(dir, 'vocab'),
    imageSize: SIZE,
    seed: 0,
    syn: 2,
    batch: 4,
    backend: 'wasm',
    quiet: true,
  });

  test('writes one DataCompDR shard per input shard with both teachers’ normalised embeddings; rerun skips', async () => {
    // runReinforce warns when the tensor count changes across the reinforcement loop (teachers loaded)
    const err = vi.spyOn(console, 'error');
    const sum = await runReinforce(args());
    expect(err.mock.calls.flat().join('\n')).not.toMatch(/tensor count changed/);
    err.mockRestore();
    expect(sum).toMatchObject({ shards: 2, written: 2, skipped: 0, samples: 5 });
    expect(readdirSync(join(dir, 'dr')).sort()).toEqual(['reinforce.json', 'shard-000000.tar', 'shard-000001.tar']);

    const samples = await readAll(join(dir, 'dr'));
    expect(samples.map((s) => s.key)).toEqual(['s0', 's1', 's2', 's3', 's4']);
    for (const s of samples) {
      const c = captions.get(s.key)!;
      const nSyn = Math.min(2, c.captions.length);
      expect(s.embDim).toBe(2 * D);
      expect(s.paramAug).toHaveLength(AUGS);
      expect(s.imageEmb.length).toBe(AUGS * 2 * D);
      expect(s.synText).toEqual(c.captions.slice(0, 2));
      expect(s.textEmb.length).toBe((1 + nSyn) * 2 * D);
      expect(s.caption).toBe(c.caption);
      expect(s.image?.format).toBe('png');
      expect(s.teachers).toEqual([
        { name: 't1.safetensors', dim: D, logitScale: 100 },
        { name: 't2.onnx', dim: D, logitScale: 70 },
      ]);
      expect(s.meta).toMatchObject({ labels: { category: expect.any(String) } });
      for (const [emb, rows] of [
        [s.imageEmb, AUGS],
        [s.textEmb, 1 + nSyn],
      ] as const)
        for (let r = 0; r < rows; r++)
          for (let k = 0; k < 2; k++) expect(Math.abs(norm(emb.subarray(r * 2 * D + k * D, r * 2 * D + (k + 1) * D)) - 1)).toBeLessThan(1e-4);
      // different augmentations give different embeddings
      // different augmentations give different embeddings (random teachers are nearly input-blind: small but non-zero)
      expect(maxDiff(s.imageEmb.subarray(0, 2 * D), s.imageEmb.subarray(4 * D, 6 * D))).toBeGreaterThan(1e-6);
    }

    // augmentation 0 of sample s2 recomputed from scratch with each teacher
    const s = samples[2];
    const png = await decodePng(s.image!.bytes);
    const view = applyAug({ data: png.data, width: png.width, height: png.height }, s.paramAug[0], SIZE);
    const { model } = await loadModel(join(dir, 't1.safetensors'), { fused: true });
    const ref1 = tf.tidy(() => l2normalize(model.encodeImage(tf.tensor4d(toFloat(view, false), [1, SIZE, SIZE, 3]))).dataSync() as Float32Array);
    model.dispose();
    // the stored row matches augmentation 0 (≤ 1e-4, and far closer than to augmentations 1 and 2)
    const row = (a: number, k: number): Float32Array => s.imageEmb.subarray(a * 2 * D + k * D, a * 2 * D + (k + 1) * D);
    const close = (ref: Float32Array, k: number): void => {
      const d0 = maxDiff(ref, row(0, k));
      expect(d0).toBeLessThanOrEqual(1e-4);
      expect(d0).toBeLessThan(0.1 * Math.min(maxDiff(ref, row(1, k)), maxDiff(ref, row(2, k))));
    };
    close(ref1, 0);
    const sess = await ort.InferenceSession.create(join(dir, 't2.onnx'));
    const out = await sess.run({
      image: new ort.Tensor('float32', toFloat(view, true), [1, 3, SIZE, SIZE]),
      tokens: new ort.Tensor('int64', new BigInt64Array(77).fill(1n), [1, 77]),
    });
    await sess.release();
    const raw = out.image_features.data as Float32Array;
    const ref2 = raw.map((v) => v / norm(raw));
    close(ref2, 1);
    // text row 0 of the checkpoint teacher = the real caption
    const tok = ClipTokenizer.fromDir(join(dir, 'vocab'));
    const { model: m2 } = await loadModel(join(dir, 't1.safetensors'), { fused: true });
    const t0 = tf.tidy(() => l2normalize(m2.encodeText(tf.tensor2d(tok.tokenize([s.caption!], 77), [1, 77], 'int32'))).dataSync() as Float32Array);
    m2.dispose();
    expect(maxDiff(t0, s.textEmb.subarray(0, D))).toBeLessThanOrEqual(1e-4);

    // rerun: both shards skipped, files unchanged
    const before = files(join(dir, 'dr'));
    const again = await runReinforce(args());
    expect(again).toMatchObject({ shards: 2, written: 0, skipped: 2, samples: 0 });
    expect(files(join(dir, 'dr'))).toEqual(before);
  });

  test('same seed gives the same records and embeddings at any batch size; a changed setting into the same folder is refused', async () => {
    const second = { ...args(), out: join(dir, 'dr2'), teacher: [join(dir, 't1.safetensors')], teacherScale: undefined, batch: 32 };
    await runReinforce(second);
    const a = await readAll(join(dir, 'dr'));
    const b = await readAll(join(dir, 'dr2'));
    expect(b.map((s) => s.paramAug)).toEqual(a.map((s) => s.paramAug));
    expect(b[0].embDim).toBe(D);
    expect(b[0].teachers).toEqual([{ name: 't1.safetensors', dim: D, logitScale: 100 }]);
    const firstSlice = (x: Float32Array): Float32Array => x.filter((_, j) => j % (2 * D) < D);
    for (let i = 0; i < a.length; i++) {
      expect(maxDiff(b[i].imageEmb, firstSlice(a[i].imageEmb))).toBeLessThanOrEqual(1e-5);
      expect(maxDiff(b[i].textEmb, firstSlice(a[i].textEmb))).toBeLessThanOrEqual(1e-5);
    }
    await expect(runReinforce({ ...second, augs: 2 })).rejects.toThrow(/other settings/);
  });

  test('an interrupted run resumes: stale temporaries removed, only the missing shard rewritten, byte-identical', async () => {
    const out = join(dir, 'dr');
    const done = readFileSync(join(out, 'shard-000001.tar'));
    const keep = files(out)['shard-000000.tar'];
    rmSync(join(out, 'shard-000001.tar'));
    writeFileSync(join(out, '.shard-000001.tar.tmp-123-abcdef'), 'partial');
    const sum = await runReinforce(args());
    expect(sum).toMatchObject({ written: 1, skipped: 1, samples: 2 });
    expect(readdirSync(out).sort()).toEqual(['reinforce.json', 'shard-000000.tar', 'shard-000001.tar']);
    expect(readFileSync(join(out, 'shard-000001.tar')).equals(done)).toBe(true);
    expect(files(out)['shard-000000.tar']).toBe(keep);
  });

  test('--engine tfjs writes the same stored embeddings as the default ORT teachers (≤ 1e-4); the engine is named; a fallback says why', async () => {
    const err = vi.spyOn(console, 'error').mockImplementation(() => undefined);
    const lines = (): string[] => err.mock.calls.map((c) => c.join(' '));
    try {
      const one = { ...args(), teacher: [join(dir, 't1.safetensors')], teacherScale: undefined, quiet: false };
      await runReinforce({ ...one, out: join(dir, 'dr-ort') });
      expect(lines()).toContainEqual(expect.stringMatching(/^mclip: teacher t1\.safetensors: engine ort \(onnxruntime-node [\d.]+ CPU, 2 threads; (cached export|exported, verified .* and cached in) .*cache\/onnx\/mobileclip_tiny-[0-9a-f]{24}\)$/));
      expect(lines()).toContain(`mclip: teacher t1.safetensors: ${D}-d, ${SIZE}px, logit scale 100, engine ort`);
      err.mockClear();
      await runReinforce({ ...one, out: join(dir, 'dr-tfjs'), engine: 'tfjs' });
      expect(lines()).toContain(`mclip: teacher t1.safetensors: ${D}-d, ${SIZE}px, logit scale 100, engine tfjs`);
      expect(lines().filter((l) => / engine ort/.test(l))).toEqual([]);
      err.mockClear();
      writeFileSync(join(dir, 'not-a-folder'), 'x');
      process.env.MCLIP_CACHE_DIR = join(dir, 'not-a-folder');
      try {
        await runReinforce({ ...one, out: join(dir, 'dr-fallback'), quiet: true });
      } finally {
        process.env.MCLIP_CACHE_DIR = join(dir, 'cache');
      }
      expect(lines()).toEqual([expect.stringMatching(/^mclip: teacher t1\.safetensors: engine tfjs instead of ort: cannot write the ONNX cache .*not-a-folder\/onnx \(ENOTDIR; /)]);
    } finally {
      err.mockRestore();
    }
    const ortRun = await readAll(join(dir, 'dr-ort'));
    const tfjsRun = await readAll(join(dir, 'dr-tfjs'));
    const fallback = await readAll(join(dir, 'dr-fallback'));
    expect(ortRun.map((s) => s.key)).toEqual(['s0', 's1', 's2', 's3', 's4']);
    let worst = 0;
    for (let i = 0; i < ortRun.length; i++) {
      expect(ortRun[i].paramAug).toEqual(tfjsRun[i].paramAug);
      expect(ortRun[i].imageEmb.length).toBe(AUGS * D);
      worst = Math.max(worst, maxDiff(ortRun[i].imageEmb, tfjsRun[i].imageEmb), maxDiff(ortRun[i].textEmb, tfjsRun[i].textEmb));
      expect(Array.from(fallback[i].imageEmb)).toEqual(Array.from(tfjsRun[i].imageEmb));
      expect(Array.from(fallback[i].textEmb)).toEqual(Array.from(tfjsRun[i].textEmb));
    }
    expect(worst).toBeLessThanOrEqual(1e-4); // unit rows: absolute = relative
    expect(worst).toBeGreaterThan(0); // two engines really ran
  });

  test('bad teachers are one-line MclipErrors', async () => {
    await expect(runReinforce({ ...args(), out: join(dir, 'x'), teacher: [join(dir, 'nope.onnx')], teacherScale: undefined })).rejects.toThrow(/nope\.onnx: file not found/);
    writeFileSync(join(dir, 't.txt'), 'x');
    await expect(runReinforce({ ...args(), out: join(dir, 'x'), teacher: [join(dir, 't.txt')], teacherScale: undefined })).rejects.toThrow(/unknown extension/);
    await expect(runReinforce({ ...args(), out: join(dir, 'x'), teacherScale: [1, 2, 3] })).rejects.toThrow(/--teacher-scale/);
    await expect(runReinforce({ ...args(), out: join(dir, 'x'), engine: 'onnx' as 'ort' })).rejects.toThrow(/--engine: expected one of ort, tfjs, got 'onnx'/);
    const other = join(dir, 'v2');
    writeVocab(other, trainVocab(Array.from({ length: 300 }, (_, i) => `other${i} text${i % 5}`), 520));
    await expect(runReinforce({ ...args(), out: join(dir, 'x'), vocab: other })).rejects.toThrow(/vocabulary/);
  });
});
