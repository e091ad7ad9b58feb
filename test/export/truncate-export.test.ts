/**
 * ONNX export with the `truncate` text padding policy (issue 12): tokens [batch, seq], seq ≤ the context
 * length, positions P[0:seq], the causal mask's seq × seq corner. On a micro causal tower the export fed the
 * cut rows equals the full-context tfjs output ≤ 1e-5 (as does tfjs with `truncate`); on a micro `mct` tower it
 * equals tfjs with `truncate` ≤ 1e-4; the default export keeps its fixed [batch, S] input and refuses shorter
 * rows; the row helper for ORT users; `mclip export --text-padding`.
 */
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { CLIP } from '../../src/base/model/clip.js';
import { saveModel } from '../../src/base/model/checkpoint.js';
import { buildOnnx, decodeModel, eotIndices, exportOnnx, ortLatency, textPaddingOf, truncateTokenRows } from '../../src/export/index.js';
import { applyTextPadding } from '../../src/prune/padding.js';
import { MICRO_CONTEXT, microConfig, microTokenRows } from '../micro-config.js';
import { relErr } from '../model/helpers.js';
import { expectOneLineError, show, tempDir } from '../cli/helpers.js';
import { runMain } from '../cli/in-process.js';

const S = MICRO_CONTEXT;

/** Three micro rows with EOT at 5, 9 and 3: a batch cut to 10 slots. */
function rows(): Int32Array {
  const all = microTokenRows();
  const r = Int32Array.from(all.slice([0, 0], [3, S]).dataSync());
  all.dispose();
  return r;
}

function microModel(base: 'mobileclip_tiny' | 'mobileclip_tiny_base', seed: number): CLIP {
  const m = new CLIP(microConfig(base), { seed });
  m.eval();
  return m;
}

/** tfjs text features of rows [n, S], with the `truncate` policy (`spare` pads) when asked. */
function tfjsText(m: CLIP, ids: Int32Array, n: number, truncate?: { spare: number }): Float32Array {
  const h = truncate ? applyTextPadding(m.textEncoder, { policy: 'truncate', spare: truncate.spare }) : null;
  try {
    return tf.tidy(() => m.encodeText(tf.tensor2d(ids, [n, S], 'int32')).dataSync() as Float32Array);
  } finally {
    h?.remove();
  }
}

async function ortText(bytes: Uint8Array, ids: Int32Array, dims: [number, number]): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1 });
  try {
    const out = await s.run({ tokens: new ort.Tensor('int64', BigInt64Array.from(ids, (v) => BigInt(v)), dims) });
    return new Float32Array(out.text_features.data as Float32Array);
  } finally {
    await s.release();
  }
}

const dimsOf = (bytes: Uint8Array) => decodeModel(bytes).graph.input.map((x) => [x.name, x.type.tensorType.shape.dim.map((d) => ('dimParam' in d ? d.dimParam : Number(d.dimValue)))]);

describe('ONNX export, text padding truncate', () => {
  const tmp = tempDir('truncate-export');
  afterAll(() => tmp.cleanup());
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true, gradients: false });
  });

  it('causal tower: the export on the cut rows equals the full-context tfjs output ≤ 1e-5, as tfjs truncate does; verified at a shorter length', async () => {
    const m = microModel('mobileclip_tiny_base', 4);
    const path = join(tmp.dir, 'base-truncate.onnx');
    const r = await exportOnnx(m, path, { tower: 'text', textPadding: 'truncate' });
    expect(r.textPadding).toBe('truncate');
    // verification ran the dynamic axis: the full context and 8 slots
    expect(Object.keys(r.verify!.relDiff)).toEqual(['text_features', 'text_features[seq 8]']);
    for (const v of Object.values(r.verify!.relDiff)) expect(v).toBeLessThanOrEqual(1e-4);
    const bytes = new Uint8Array(readFileSync(path));
    expect(dimsOf(bytes)).toEqual([['tokens', ['batch', 'seq']]]);
    const meta = decodeModel(bytes).metadataProps;
    expect(textPaddingOf(meta)).toBe('truncate');
    expect(meta.find((e) => e.key === 'mclip.context_length')?.value).toBe(String(S));

    const ids = rows();
    const full = tfjsText(m, ids, 3);
    expect(relErr(full, tfjsText(m, ids, 3, { spare: 0 }))).toBeLessThanOrEqual(1e-5);
    const errs: number[] = [];
    for (const spare of [0, 2, 100]) {
      const cut = truncateTokenRows(ids, 3, S, spare);
      expect(cut.length).toBe(Math.min(S, 10 + spare));
      errs.push(relErr(full, await ortText(bytes, cut.ids, [3, cut.length])));
    }
    console.log(`causal micro tower, ONNX truncate (10, 12, 16 slots) vs full tfjs: ${errs.map((e) => e.toExponential(2)).join(', ')}`);
    for (const e of errs) expect(e).toBeLessThanOrEqual(1e-5);
    // one row alone (EOT at 3): 4 slots
    const one = truncateTokenRows(ids.subarray(2 * S, 3 * S), 1, S);
    expect(one.length).toBe(4);
    expect(relErr(full.subarray(2 * 64, 3 * 64), await ortText(bytes, one.ids, [1, 4]))).toBeLessThanOrEqual(1e-5);
    // latency on the dynamic axis at a chosen row length
    const lat = await ortLatency(path, 'text', { batch: 2, runs: 2, warmup: 1, threads: 1, seqLen: 6 });
    expect(lat.medianMs).toBeGreaterThan(0);
    m.dispose();
  });

  it('mct tower: the export on the cut rows equals tfjs with truncate ≤ 1e-4 (and both differ from the full-context output)', async () => {
    const m = microModel('mobileclip_tiny', 6);
    const bytes = buildOnnx(m, { tower: 'both', textPadding: 'truncate' });
    expect(dimsOf(bytes)).toEqual([['image', ['batch', 3, 32, 32]], ['tokens', ['batch', 'seq']]]);
    const ids = rows();
    const full = tfjsText(m, ids, 3);
    const errs: string[] = [];
    const s = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 1 });
    try {
      for (const spare of [0, 3]) {
        const cut = truncateTokenRows(ids, 3, S, spare);
        const ref = tfjsText(m, ids, 3, { spare });
        const out = await s.run(
          { image: new ort.Tensor('float32', new Float32Array(3 * 3 * 32 * 32), [3, 3, 32, 32]), tokens: new ort.Tensor('int64', BigInt64Array.from(cut.ids, (v) => BigInt(v)), [3, cut.length]) },
          ['text_features'],
        );
        const e = relErr(ref, out.text_features.data as Float32Array);
        errs.push(`${cut.length} slots ${e.toExponential(2)} (vs full ${relErr(full, ref).toExponential(2)})`);
        expect(e).toBeLessThanOrEqual(1e-4);
        expect(relErr(full, ref)).toBeGreaterThan(1e-4); // truncate is approximate on mct: the test is not vacuous
      }
    } finally {
      await s.release();
    }
    console.log(`mct micro tower, ONNX truncate vs tfjs truncate: ${errs.join('; ')}`);
    // The full-width rows through the truncate graph are the as-trained output.
    expect(relErr(full, await ortText(new Uint8Array(buildOnnx(m, { tower: 'text', textPadding: 'truncate' })), ids, [3, S]))).toBeLessThanOrEqual(1e-5);
    m.dispose();
  });

  it('the default export keeps tokens [batch, S], records no policy and refuses shorter rows', async () => {
    const m = microModel('mobileclip_tiny_base', 4);
    const bytes = buildOnnx(m, { tower: 'text' });
    expect(Buffer.from(buildOnnx(m, { tower: 'text', textPadding: 'as-trained' })).equals(Buffer.from(bytes))).toBe(true);
    expect(dimsOf(bytes)).toEqual([['tokens', ['batch', S]]]);
    const meta = decodeModel(bytes).metadataProps;
    expect(meta.some((e) => e.key === 'mclip.text_padding')).toBe(false);
    expect(textPaddingOf(meta)).toBe('as-trained');
    const cut = truncateTokenRows(rows(), 3, S);
    await expect(ortText(bytes, cut.ids, [3, cut.length])).rejects.toThrow(/dimension|Got: 10 Expected: 16/i);
    const path = join(tmp.dir, 'fixed.onnx');
    await exportOnnx(m, path, { tower: 'text', verify: false });
    await expect(ortLatency(path, 'text', { runs: 1, warmup: 0, seqLen: 6 })).rejects.toThrow(/fixed at 16; a row length of 6 needs a 'truncate' export/);
    expect(() => buildOnnx(m, { tower: 'image', textPadding: 'truncate' })).toThrow(/needs the text tower/);
    m.dispose();
  });

  it('truncateTokenRows / eotIndices / textPaddingOf', () => {
    // EOT = the largest id, first arg-max; rows [SOT a EOT 0 0], [SOT EOT 0 0 0]
    const ids = Int32Array.from([9, 3, 10, 0, 0, 9, 10, 0, 0, 0]);
    expect([...eotIndices(ids, 2, 5)]).toEqual([2, 1]);
    const cut = truncateTokenRows(ids, 2, 5);
    expect(cut.length).toBe(3);
    expect([...cut.ids]).toEqual([9, 3, 10, 9, 10, 0]);
    expect([...truncateTokenRows(ids, 2, 5, 1).ids]).toEqual([9, 3, 10, 0, 9, 10, 0, 0]);
    const same = truncateTokenRows(ids, 2, 5, 9);
    expect(same.length).toBe(5);
    expect(same.ids).toBe(ids);
    expect(() => truncateTokenRows(ids, 2, 5, -1)).toThrow(/non-negative integer/);
    expect(() => truncateTokenRows(ids, 3, 5)).toThrow(/expected 3×5 token ids, got 10/);
    expect(textPaddingOf(undefined)).toBe('as-trained');
    expect(() => textPaddingOf([{ key: 'mclip.text_padding', value: 'trim' }])).toThrow(/'trim' \(known: as-trained, truncate\)/);
  });

  it('mclip export --text-padding truncate writes a dynamic graph; a wrong name is a usage error', async () => {
    const m = microModel('mobileclip_tiny_base', 4);
    const ckpt = join(tmp.dir, 'micro-base.safetensors');
    saveModel(m, ckpt);
    m.dispose();
    const out = join(tmp.dir, 'cli.onnx');
    const r = await runMain(['export', '--checkpoint', ckpt, '--out', out, '--tower', 'text', '--text-padding', 'truncate']);
    expect(r.status, show(r)).toBe(0);
    expect(r.stderr).toMatch(/text padding truncate: tokens \[batch, seq ≤ context length\]\); onnxruntime vs tfjs max rel\. diff: text_features \S+, text_features\[seq 8\] \S+/);
    const bytes = new Uint8Array(readFileSync(out));
    expect(dimsOf(bytes)).toEqual([['tokens', ['batch', 'seq']]]);
    expect(textPaddingOf(decodeModel(bytes).metadataProps)).toBe('truncate');
    const bad = await runMain(['export', '--checkpoint', ckpt, '--out', join(tmp.dir, 'never.onnx'), '--text-padding', 'merge-pads']);
    expectOneLineError(expect, bad, /--text-padding: expected one of as-trained, truncate, got 'merge-pads' \(see mclip export --help\)$/, 2);
    const img = await runMain(['export', '--checkpoint', ckpt, '--out', join(tmp.dir, 'never.onnx'), '--tower', 'image', '--text-padding', 'truncate']);
    expectOneLineError(expect, img, /--text-padding truncate needs the text tower \(--tower text or both\)$/);
  });
});
