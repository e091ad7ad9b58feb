import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import * as tf from '../../src/base/tf.js';
import type { Module } from '../../src/base/nn/module.js';
import { initBackend } from '../../src/base/backend/index.js';
import { loadModel } from '../../src/base/model/checkpoint.js';
import type { CLIP } from '../../src/base/model/clip.js';
import { fixture } from '../paths.js';
import * as ort from 'onnxruntime-node';
import { toFloat32, type StateDict } from '../../src/base/io/tensor-data.js';

/** Deterministic uniform [0, 1). */
export function rand(seed: number): () => number {
  let a = seed >>> 0 || 1;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Makes a freshly initialised (unfused) model non-trivial: layer scales ~0.3–0.8 instead of 1e-5,
 * BatchNorm statistics and affine parameters away from the identity, so every branch matters.
 */
export function perturb(model: Module, seed = 1): void {
  const r = rand(seed);
  for (const [name, p] of model.namedParams()) {
    if (p.variable.dtype !== 'float32') continue;
    const n = p.variable.size;
    const u = (lo: number, hi: number) => Float32Array.from({ length: n }, () => lo + (hi - lo) * r());
    let v: Float32Array | null = null;
    if (/layer_scale/.test(name)) v = u(0.3, 0.8);
    else if (/running_var$/.test(name)) v = u(0.5, 2);
    else if (/running_mean$/.test(name)) v = u(-0.3, 0.3);
    else if (/(bn|rbr_skip|norm)\.weight$/.test(name) && p.variable.rank === 1) v = u(0.6, 1.4);
    else if (/(bn|rbr_skip|norm)\.bias$/.test(name) && p.variable.rank === 1) v = u(-0.2, 0.2);
    if (v) p.variable.assign(tf.tensor(v, p.variable.shape));
  }
}

/**
 * The S0 fixture model (fixture `mobileclip_s0/model_fp16.pt`) and a temporary folder for one suite: loaded
 * in `beforeAll` (wasm, no gradients; `fused`: the inference form, else the train form in eval mode),
 * disposed with the folder in `afterAll`. Call it inside a `describeFixtures` block; read `.model` / `.dir` in tests.
 */
export function s0Fixture(prefix: string, opts: { fused: boolean }): { readonly model: CLIP; readonly dir: string } {
  let model: CLIP | undefined;
  let dir: string | undefined;
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true, gradients: false });
    dir = mkdtempSync(join(tmpdir(), prefix));
    model = (await loadModel(fixture('mobileclip_s0', 'model_fp16.pt'), { arch: 'mobileclip_s0', fused: opts.fused })).model;
    if (!opts.fused) model.eval();
  });
  afterAll(() => {
    model?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  const need = <T>(v: T | undefined, what: string): T => {
    if (v === undefined) throw new Error(`s0Fixture: ${what} is read before beforeAll ran`);
    return v;
  };
  return {
    get model() {
      return need(model, 'the model');
    },
    get dir() {
      return need(dir, 'the folder');
    },
  };
}

/**
 * Runs the exported two-tower ONNX file at PATH in onnxruntime on a fixture's `image` (float32 NCHW) and
 * `tokens` (int32, fed as int64 as PyTorch exports them); returns both outputs with their dims.
 */
export async function runOrtTowers(path: string, inputs: StateDict): Promise<{ image: { data: Float32Array; dims: readonly number[] }; text: { data: Float32Array; dims: readonly number[] } }> {
  const img = inputs.get('image')!;
  const tok = inputs.get('tokens')!;
  const s = await ort.InferenceSession.create(path, { intraOpNumThreads: 2 });
  try {
    const out = await s.run({
      image: new ort.Tensor('float32', toFloat32(img), img.shape),
      tokens: new ort.Tensor('int64', BigInt64Array.from(tok.data as Int32Array, (v) => BigInt(v)), tok.shape),
    });
    return {
      image: { data: out.image_features.data as Float32Array, dims: out.image_features.dims },
      text: { data: out.text_features.data as Float32Array, dims: out.text_features.dims },
    };
  } finally {
    await s.release();
  }
}
