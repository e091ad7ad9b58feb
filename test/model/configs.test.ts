import { beforeAll, describe, expect, test } from 'vitest';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { CLIP, ImageEncoder } from '../../src/base/model/clip.js';
import { archNames, getConfig } from '../../src/base/model/configs.js';
import { reparameterize } from '../../src/base/model/reparameterize.js';
import { MclipError } from '../../src/errors.js';

/** Parameter counts after reparameterisation, methods.md §1.2 / §1.3 / §1.6 (millions). */
const EXPECTED: Record<string, { image: number; text: number }> = {
  mobileclip_s0: { image: 11.36, text: 42.44 },
  mobileclip_s1: { image: 21.46, text: 63.43 },
  mobileclip_s2: { image: 35.7, text: 63.43 },
  mobileclip_b: { image: 86.35, text: 63.43 },
};

describe('named architectures', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true, gradients: false });
  });

  test('the four official configs and the tiny ones are registered; unknown names are a clear error', () => {
    for (const n of [...Object.keys(EXPECTED), 'mobileclip_tiny', 'mobileclip_tiny_base']) expect(archNames()).toContain(n);
    expect(() => getConfig('mobileclip_s9')).toThrow(MclipError);
    expect(() => getConfig('mobileclip_s9')).toThrow(/unknown arch 'mobileclip_s9'/);
  });

  for (const [name, want] of Object.entries(EXPECTED)) {
    test(`${name}: reparameterised parameter counts match the official ones`, () => {
      const model = reparameterize(new CLIP(getConfig(name)).eval());
      const image = model.imageEncoder.numParams() / 1e6;
      const text = model.textEncoder.numParams() / 1e6;
      expect(Math.abs(image - want.image), `image ${image.toFixed(3)} M`).toBeLessThan(0.01);
      expect(Math.abs(text - want.text), `text ${text.toFixed(3)} M`).toBeLessThan(0.01);
      model.dispose();
    });
  }

  test('mobileclip_b: causal text tower and a ViT-B/16 image tower run at 224×224', () => {
    const cfg = getConfig('mobileclip_b');
    expect(cfg.text.causalMasking).toBe(true);
    // Only the image tower runs here, so only it is built (the 63 M text parameters took seconds to
    // initialise; the text tower's size is checked by the parameter counts above).
    const model = new ImageEncoder(cfg, {}).eval();
    const y = tf.tidy(() => model.call(tf.randomUniform([1, 224, 224, 3])));
    expect(y.shape).toEqual([1, 512]);
    expect(Number.isFinite(y.sum().dataSync()[0])).toBe(true);
    y.dispose();
    model.dispose();
  });

  test('causal masking: with mobileclip_tiny_base the EOT feature ignores tokens after EOT; without it, it does not', () => {
    for (const causal of [true, false]) {
      const cfg = getConfig('mobileclip_tiny_base');
      cfg.text.causalMasking = causal;
      const model = new CLIP(cfg, { seed: 2 }).eval();
      const row = (tail: number) => [cfg.text.vocabSize - 2, 5, 6, cfg.text.vocabSize - 1, ...new Array(73).fill(tail)];
      const y = tf.tidy(() => model.encodeText(tf.tensor2d([row(0), row(7)], [2, 77], 'int32')));
      const d = tf.tidy(() => y.slice([0, 0], [1, -1]).sub(y.slice([1, 0], [1, -1])).abs().max().dataSync()[0]);
      if (causal) expect(d).toBeLessThan(1e-5);
      else expect(d).toBeGreaterThan(1e-3);
      y.dispose();
      model.dispose();
    }
  });

  test('train form vs inference form of mobileclip_tiny agree after reparameterize (random BN statistics)', () => {
    const model = new CLIP(getConfig('mobileclip_tiny'), { seed: 5 }).eval();
    let s = 1;
    const rnd = () => ((s = (s * 16807) % 2147483647) / 2147483647);
    for (const [n, p] of model.namedParams()) {
      if (/layer_scale/.test(n)) p.variable.assign(tf.fill(p.variable.shape, 0.4));
      if (/running_var/.test(n)) p.variable.assign(tf.tensor(Float32Array.from({ length: p.variable.size }, () => 0.5 + rnd()), p.variable.shape));
      if (/running_mean|bn\.bias|rbr_skip\.bias/.test(n)) p.variable.assign(tf.tensor(Float32Array.from({ length: p.variable.size }, () => rnd() - 0.5), p.variable.shape));
    }
    const x = tf.randomUniform([2, 64, 64, 3], 0, 1, 'float32', 1);
    const tok = tf.tensor2d([[4094, 10, 11, 12, 4095, ...new Array(72).fill(0)], [4094, 99, 4095, ...new Array(74).fill(0)]], [2, 77], 'int32');
    const a = model.encodeImage(x);
    const b = model.encodeText(tok);
    const before = model.numParams();
    reparameterize(model);
    expect(model.numParams()).toBeLessThan(before);
    const a2 = model.encodeImage(x);
    const b2 = model.encodeText(tok);
    const rel = (p: tf.Tensor, q: tf.Tensor) => tf.tidy(() => p.sub(q).abs().max().div(p.abs().max()).dataSync()[0]);
    expect(rel(a, a2)).toBeLessThan(1e-4);
    expect(rel(b, b2)).toBeLessThan(1e-4);
    tf.dispose([x, tok, a, b, a2, b2]);
    model.dispose();
  });
});
