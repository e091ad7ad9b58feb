import * as tf from '@tensorflow/tfjs-core';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { MclipError } from '../../src/errors.js';
import {
  currentBackend,
  gradientsRegistered,
  initBackend,
  parseBackendChoice,
  setBackendModuleLoader,
} from '../../src/base/backend/index.js';

function captureStderr(): { lines: () => string[]; restore: () => void } {
  const chunks: string[] = [];
  const spy = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    chunks.push(String(chunk));
    return true;
  });
  return { lines: () => chunks.join('').split('\n').filter(Boolean), restore: () => spy.mockRestore() };
}

const savedEnv = process.env.MCLIP_BACKEND;
afterEach(() => {
  if (savedEnv == null) delete process.env.MCLIP_BACKEND;
  else process.env.MCLIP_BACKEND = savedEnv;
  setBackendModuleLoader(null);
});

describe('initBackend', () => {
  it('defaults to wasm (SIMD) when tfjs-node is absent, says why on the backend line and how to get it (once), is idempotent', async () => {
    delete process.env.MCLIP_BACKEND;
    const savedCache = process.env.MCLIP_CACHE_DIR;
    process.env.MCLIP_CACHE_DIR = mkdtempSync(join(tmpdir(), 'mclip-cache-'));
    const err = captureStderr();
    try {
      const info = await initBackend();
      expect(info).toMatchObject({ name: 'wasm', package: '@tensorflow/tfjs-backend-wasm', gpu: false, threads: 1 });
      expect(info.nativeUnavailable).toMatch(/Cannot find package '@tensorflow\/tfjs-node'/);
      expect(typeof info.simd).toBe('boolean');
      expect(tf.getBackend()).toBe('wasm');
      expect(err.lines()).toEqual([
        `mclip: backend wasm (${info.simd ? 'SIMD' : 'no SIMD'}, 1 thread): @tensorflow/tfjs-node is not installed`,
        expect.stringMatching(/^mclip: for the native TensorFlow backend: npm install @tensorflow\/tfjs-node --allow-scripts=@tensorflow\/tfjs-node .*\(this hint is shown once\)$/),
      ]);
      expect(gradientsRegistered()).toBe(true);
      // again: same result, nothing printed; also concurrently
      const again = await Promise.all([initBackend(), initBackend()]);
      expect(again).toEqual([info, info]);
      expect(err.lines()).toHaveLength(2);
      expect(currentBackend()).toEqual(info);
    } finally {
      err.restore();
      rmSync(process.env.MCLIP_CACHE_DIR, { recursive: true, force: true });
      if (savedCache == null) delete process.env.MCLIP_CACHE_DIR;
      else process.env.MCLIP_CACHE_DIR = savedCache;
    }
  });

  it('MCLIP_BACKEND=cpu picks cpu; quiet prints nothing', async () => {
    process.env.MCLIP_BACKEND = 'cpu';
    const err = captureStderr();
    try {
      const info = await initBackend({ quiet: true });
      expect(info).toEqual({ name: 'cpu', package: '@tensorflow/tfjs-backend-cpu', gpu: false, threads: 1 });
      expect(tf.getBackend()).toBe('cpu');
      expect(err.lines()).toEqual([]);
    } finally {
      err.restore();
    }
    // opts.backend wins over the environment
    const w = await initBackend({ backend: 'WASM', quiet: true });
    expect(w.name).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
  });

  it('an unknown name is an MclipError', async () => {
    await expect(initBackend({ backend: 'tpu', quiet: true })).rejects.toThrow(MclipError);
    await expect(initBackend({ backend: 'tpu', quiet: true })).rejects.toThrow(/unknown backend 'tpu'.*tfjs-node.*wasm.*cpu/);
    process.env.MCLIP_BACKEND = 'gpu';
    await expect(initBackend({ quiet: true })).rejects.toThrow(/MCLIP_BACKEND/);
    expect(() => parseBackendChoice('tensorflow')).not.toThrow();
    expect(parseBackendChoice(' @tensorflow/tfjs-node ')).toBe('tfjs-node');
  });

  it('requesting tfjs-node when it is not installed is an MclipError saying why and what to do', async () => {
    const p = initBackend({ backend: 'tfjs-node', quiet: true });
    await expect(p).rejects.toThrow(MclipError);
    await expect(initBackend({ backend: 'tfjs-node', quiet: true })).rejects.toThrow(
      /backend 'tfjs-node' requested but @tensorflow\/tfjs-node could not be loaded: .+; install it with 'npm install @tensorflow\/tfjs-node'.* or use --backend wasm/,
    );
    await expect(initBackend({ backend: 'tensorflow', quiet: true })).rejects.toThrow(/neither @tensorflow\/tfjs-node-gpu .* nor @tensorflow\/tfjs-node/);
    expect(tf.getBackend()).toBe('wasm'); // unchanged
  });

  it('uses tfjs-node when it loads and registers the tensorflow backend (simulated)', async () => {
    const loaded: string[] = [];
    setBackendModuleLoader(async (name) => {
      loaded.push(name);
      if (name === '@tensorflow/tfjs-node-gpu') throw new Error('libcudart.so.11.0: cannot open shared object file');
      if (name === '@tensorflow/tfjs-node') {
        // stand-in: registers a 'tensorflow' backend (a fresh cpu backend instance)
        if (tf.findBackendFactory('tensorflow') == null) tf.registerBackend('tensorflow', () => new MathBackendCPU());
        return { version_core: tf.version_core };
      }
      throw new Error(`unexpected ${name}`);
    });
    const err = captureStderr();
    try {
      const info = await initBackend({ backend: 'auto', threads: 3 });
      expect(loaded).toEqual(['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']);
      expect(info).toEqual({ name: 'tensorflow', package: '@tensorflow/tfjs-node', gpu: false, threads: 3 });
      expect(err.lines()).toEqual(['mclip: backend tensorflow (@tensorflow/tfjs-node, CPU, 3 threads)']);
    } finally {
      err.restore();
      delete process.env.TF_NUM_INTRAOP_THREADS;
      tf.removeBackend('tensorflow');
    }
    // a tfjs-node built against another tfjs-core is refused
    setBackendModuleLoader(async () => ({ version_core: '3.0.0' }));
    await expect(initBackend({ backend: 'tfjs-node', quiet: true })).rejects.toThrow(/tfjs-core 3\.0\.0 but mclip uses/);
    await initBackend({ backend: 'wasm', quiet: true });
    expect(tf.getBackend()).toBe('wasm');
  });
});
