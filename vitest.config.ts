import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defineConfig } from 'vitest/config';

/** The suite's own cache folder (test/global-cache.ts creates and removes it). */
const cacheDir = join(tmpdir(), `mclip-test-cache-${process.pid}`);

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // A safety net, not a budget: tests are meant to take at most ~10 s on an idle 2-core machine (20 s
    // loaded); test/slowest-reporter.ts prints the slowest ten after every run. (60 s once the ONNX export
    // no longer spends ~20 s in tf.tidy: test/export/s0-export.test.ts takes ~55 s beside a busy core.)
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: 'forks',
    maxWorkers: 2,
    // describe.concurrent suites (the CLI ones spawn a node process per test): two at a time per worker is
    // enough to fill 2 cores, and keeps each test's measured time close to its own cost.
    maxConcurrency: 2,
    reporters: ['default', './test/slowest-reporter.ts'],
    // One training rank unless a test asks for more (`mclip train` defaults to one per core): the suite's
    // own processes already fill the cores. test/train/data-parallel.test.ts and the --workers CLI test use 2.
    env: { MCLIP_WORKERS: '1', MCLIP_CACHE_DIR: cacheDir },
    globalSetup: ['./test/global-cache.ts'],
  },
});
