import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { firstTime, nativeHint, nativeReason } from '../../src/base/backend/native-notice.js';

const absent = "Cannot find package '@tensorflow/tfjs-node' imported from /x/dist/src/base/backend/index.js";
const brokenBinding = 'The specified module could not be found. /x/node_modules/@tensorflow/tfjs-node/lib/napi-v8/tfjs_binding.node';

describe('why the native backend is off, and how to get it', () => {
  it('absent package: "not installed" and the install command with its install script allowed', () => {
    expect(nativeReason(absent)).toBe('@tensorflow/tfjs-node is not installed');
    expect(nativeHint(absent)).toMatch(/npm install @tensorflow\/tfjs-node --allow-scripts=@tensorflow\/tfjs-node/);
    expect(nativeHint(absent)).toMatch(/tfjs-node-gpu/);
  });

  it('installed but libtensorflow missing: the load error is named and the rebuild is suggested', () => {
    expect(nativeReason(brokenBinding)).toMatch(/^@tensorflow\/tfjs-node is installed but did not load \(The specified module could not be found/);
    expect(nativeReason('x'.repeat(500)).length).toBeLessThan(200);
    expect(nativeHint(brokenBinding)).toMatch(/npm install-scripts approve @tensorflow\/tfjs-node && npm rebuild @tensorflow\/tfjs-node/);
  });

  it('the hint is shown once per reason and cache folder', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mclip-notice-'));
    try {
      expect(firstTime('a', dir)).toBe(true);
      expect(firstTime('a', dir)).toBe(false);
      expect(firstTime('b', dir)).toBe(true);
      expect(readdirSync(join(dir, 'notices'))).toHaveLength(2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
