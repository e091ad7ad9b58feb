/**
 * The fused AdamW kernel (fast-ops.c adamw_f32) against the tf-op update of adamw.ts on wasm: three
 * steps over the micro model's parameters (decayed and undecayed) and an ascent group, with the
 * weight-decay factor and bias corrections changing each step — every parameter and moment equal to
 * the bit.
 */
import { beforeAll, describe, expect, test } from 'vitest';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { CLIP } from '../../src/base/model/clip.js';
import { AdamW } from '../../src/base/train/adamw.js';
import { setFastOps, fastOpsAvailable } from '../../src/base/nn/fast-ops.js';
import { microConfig } from '../micro-config.js';

function run(fast: boolean): Map<string, Float32Array> {
  const prev = setFastOps(fast ? true : ['dwconv', 'gelu', 'qkv', 'layernorm', 'reduce']);
  try {
    const model = new CLIP(microConfig(), { seed: 3 });
    const extra = tf.tidy(() => tf.variable(tf.tensor([0.5, -1.5, 2, 0.25, 3, -0.75]), true, `extra-${fast}`));
    const opt = new AdamW(model, { lr: 3e-3, weightDecay: 0.1, groups: [{ name: 'mult', variables: [extra], lr: 0.05, weightDecay: 0.01, ascent: true }] });
    for (let step = 0; step < 3; step++) {
      const grads: Record<string, tf.Tensor> = {};
      opt.variables.forEach((v, i) => {
        grads[v.name] = tf.tidy(() => tf.sin(tf.range(0, v.size).reshape(v.shape).mul(0.37 + 0.11 * step + 0.01 * i)).mul(i % 3 === 0 ? 1e-3 : 1));
      });
      opt.lr = 3e-3 * (1 - 0.2 * step);
      opt.apply(grads);
      tf.dispose(Object.values(grads));
    }
    const out = new Map<string, Float32Array>();
    for (const [name, p] of model.namedParams()) out.set(name, p.variable.dataSync() as Float32Array);
    for (const [k, t] of opt.state()) out.set(k, t.dataSync() as Float32Array);
    out.set('extra', extra.dataSync() as Float32Array);
    opt.dispose();
    model.dispose();
    extra.dispose();
    return out;
  } finally {
    setFastOps(prev);
  }
}

describe('AdamW fused kernel (wasm)', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true });
  });

  test('bit-identical to the tf-op update over 3 steps (decay, no decay, ascent group)', () => {
    expect(fastOpsAvailable('adamw')).toBe(true);
    const before = tf.memory().numTensors;
    const ref = run(false);
    const mid = tf.memory().numTensors;
    const got = run(true);
    expect([mid, tf.memory().numTensors]).toEqual([before, before]);
    expect([...got.keys()]).toEqual([...ref.keys()]);
    let differing = 0;
    for (const [k, r] of ref) {
      const g = got.get(k)!;
      for (let i = 0; i < r.length; i++) if (!Object.is(r[i], g[i])) differing++;
    }
    expect(differing).toBe(0);
    // and the update did something: the extra (ascent) group moved
    expect(Array.from(got.get('extra')!)).not.toEqual([0.5, -1.5, 2, 0.25, 3, -0.75]);
  });
});
