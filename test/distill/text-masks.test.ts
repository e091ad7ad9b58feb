/**
 * TinyCLIP text masks (methods.md §3.3, §3.7, §3.8) on the micro models — `mct` (RepMixer blocks around a
 * transformer encoder; unfused and reparameterised) and causal `base` — with hand-chosen masks that zero some
 * heads, FFN units and hidden channels and leave fractional values elsewhere: the masked model (hooks and
 * masked LayerNorms) and the physically pruned one give the same text embeddings, the pruned one has the
 * expected widths and parameter count, all-ones masks change nothing, `remove()` restores the exact outputs,
 * the masks receive gradients, and no tensor leaks.
 */
import { beforeAll, describe, expect, test } from 'vitest';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { CLIP } from '../../src/base/model/clip.js';
import { textLayers, type ClipConfig, type TextLayerConfig } from '../../src/base/model/configs.js';
import { reparameterize } from '../../src/base/model/reparameterize.js';
import { expectedShapes } from '../../src/base/model/state-dict.js';
import { LayerNorm } from '../../src/base/layers/layer-norm.js';
import { MaskedLayerNorm } from '../../src/distill/masks/masked-layer-norm.js';
import { applyTextMasks, textMaskSizes, textMaskValues, type TextMaskSet, type TextMaskValues } from '../../src/distill/masks/text-masks.js';
import { pruneText } from '../../src/distill/masks/prune-text.js';
import { microConfig, microTokenRows } from '../micro-config.js';
import { relErr as relErrOf } from '../model/helpers.js';
import { expectMaskGradients, expectMasksRemoved, maskVariables } from './mask-helpers.js';

const tokens = microTokenRows;

/** Non-trivial LayerNorm affines, BN statistics and layer scales, so every sliced and folded tensor matters. */
function randomise(model: CLIP): void {
  let seed = 11;
  for (const [name, p] of model.namedParams()) {
    if (p.variable.dtype !== 'float32') continue;
    tf.tidy(() => {
      const r = tf.randomUniform(p.variable.shape, 0, 1, 'float32', seed++);
      if (/running_var$/.test(name)) p.variable.assign(r.mul(1.5).add(0.5));
      else if (/running_mean$|bn\.bias$|rbr_skip\.bias$/.test(name)) p.variable.assign(r.sub(0.5));
      else if (/bn\.weight$|rbr_skip\.weight$/.test(name)) p.variable.assign(r.add(0.5));
      else if (/layer_scale/.test(name)) p.variable.assign(r.mul(0.8).add(0.1));
      else if (/norm(\.0)?\.weight$|pre_norm_(mha|ffn)\.0\.weight$/.test(name)) p.variable.assign(r.add(0.5));
      else if (/norm(\.0)?\.bias$|pre_norm_(mha|ffn)\.0\.bias$/.test(name)) p.variable.assign(r.sub(0.5).mul(0.4));
    });
  }
}

function text(model: CLIP, toks: tf.Tensor2D): Float32Array {
  return tf.tidy(() => Float32Array.from(model.encodeText(toks).dataSync() as Float32Array));
}

/** max|got − want| / max|want| (the shared helper takes the reference first). */
const relErr = (got: Float32Array, want: Float32Array): number => relErrOf(want, got);

/** n fractional values in [0.3, 1] (some exactly 1), zero at `zeros`. */
function pattern(n: number, zeros: (j: number) => boolean, seed = 0): Float32Array {
  return Float32Array.from({ length: n }, (_, j) => (zeros(j) ? 0 : [1, 0.3, 0.55, 0.8, 0.95, 0.65, 1, 0.42][(j * 5 + seed) % 8]));
}

const ones = (n: number): Float32Array => new Float32Array(n).fill(1);
const count = (z: Float32Array | undefined, n: number): number => (z ? z.filter((x) => x !== 0).length : n);

function toTensors(v: TextMaskValues): TextMaskSet {
  return { hidden: v.hidden && tf.tensor1d(v.hidden), layers: v.layers.map((l) => l && { heads: l.heads && tf.tensor1d(l.heads), ffn: l.ffn && tf.tensor1d(l.ffn) }) };
}

function disposeSet(s: TextMaskSet): void {
  tf.dispose([s.hidden, ...s.layers.flatMap((l) => [l?.heads, l?.ffn])].filter((t): t is tf.Tensor1D => t !== undefined));
}

/** The pruned architecture, worked out here from the masks (a layer with nothing left keeps 1 head of width 1 / 1 unit). */
function expectedConfig(cfg: ClipConfig, v: TextMaskValues): ClipConfig {
  const layers: TextLayerConfig[] = textLayers(cfg.text).map((l, i) => {
    const m = v.layers[i];
    const ffnDim = Math.max(1, count(m?.ffn, l.ffnDim));
    if (l.mixer === 'repmixer') return { mixer: 'repmixer', ffnDim };
    const heads = count(m?.heads, l.heads);
    return { mixer: 'attention', heads: Math.max(1, heads), headDim: heads === 0 ? 1 : l.headDim, ffnDim };
  });
  return { ...cfg, text: { ...cfg.text, dim: count(v.hidden, cfg.text.dim), layers } };
}

interface Case {
  name: string;
  config: () => ClipConfig;
  fused?: boolean;
  masks: (cfg: ClipConfig) => TextMaskValues;
}

const hiddenZeros = (j: number): boolean => [3, 10, 17, 40, 41, 63].includes(j);

const CASES: Case[] = [
  {
    name: 'mct (RepMixer · encoder · RepMixer)',
    config: () => microConfig('mobileclip_tiny'),
    // RepMixer 0: ConvFFN units pruned; encoder: head 1 pruned, head 0 soft, FFN units pruned; RepMixer 2: hidden only.
    masks: () => ({
      hidden: pattern(64, hiddenZeros),
      layers: [{ ffn: pattern(256, (j) => j % 5 === 2, 1) }, { heads: Float32Array.of(0.7, 0), ffn: pattern(256, (j) => j % 3 === 0, 2) }, null],
    }),
  },
  {
    name: 'mct, reparameterised',
    config: () => microConfig('mobileclip_tiny'),
    fused: true,
    masks: () => ({
      hidden: pattern(64, hiddenZeros, 3),
      layers: [null, { heads: Float32Array.of(0, 0.85), ffn: pattern(256, (j) => j % 4 === 1, 2) }, { ffn: pattern(256, (j) => j < 100, 5) }],
    }),
  },
  {
    name: 'base (causal)',
    config: () => microConfig('mobileclip_tiny_base'),
    masks: () => ({ hidden: pattern(64, hiddenZeros, 1), layers: [{ heads: Float32Array.of(0, 0.75), ffn: pattern(256, (j) => j % 3 === 1, 4) }] }),
  },
  {
    name: 'base, 2 layers × 4 heads: all heads of layer 0 and all FFN units of layer 1 pruned',
    config: () => {
      const c = microConfig('mobileclip_tiny_base');
      c.text = { ...c.text, nHeads: 4, nTransformerLayers: 2 };
      return c;
    },
    masks: () => ({
      hidden: pattern(64, (j) => j % 7 === 0, 2),
      layers: [
        { heads: new Float32Array(4), ffn: pattern(256, (j) => j % 2 === 0, 3) },
        { heads: Float32Array.of(0.5, 0, 1, 0.9), ffn: new Float32Array(256) },
      ],
    }),
  },
];

/** LayerNorm paths of the text tower. */
function normPaths(model: CLIP): string[] {
  return model.namedModules().flatMap(([p, m]) => (p.startsWith('text_encoder.') && m instanceof LayerNorm ? [p] : []));
}

describe('TinyCLIP text masks', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true });
  });

  for (const c of CASES) {
    test(`${c.name}: masked == pruned, smaller widths and params; remove() restores; no leaks`, () => {
      const before = tf.memory().numTensors;
      const cfg = c.config();
      const model = new CLIP(cfg, { seed: 3 });
      randomise(model);
      model.eval();
      if (c.fused) reparameterize(model);
      const toks = tokens();
      const norms = normPaths(model);
      const ref = text(model, toks);

      const values = c.masks(cfg);
      const set = toTensors(values);
      const handle = applyTextMasks(model, set);
      expect(norms.every((p) => model.get(p) instanceof MaskedLayerNorm)).toBe(true);
      const masked = text(model, toks);
      expect(relErr(masked, ref)).toBeGreaterThan(1e-2); // the masks do something

      const pruned = pruneText(model, textMaskValues(set));
      try {
        const got = text(pruned.model, toks);
        expect(relErr(got, masked)).toBeLessThan(1e-5);

        // widths and parameter count, against a model of the architecture expected from the masks
        const want = expectedConfig(cfg, values);
        expect(textLayers(pruned.config.text)).toEqual(textLayers(want.text));
        expect(pruned.config.text.dim).toBe(want.text.dim);
        const ref2 = new CLIP(want, { inferenceMode: c.fused });
        const textShapes = (m: CLIP) => [...expectedShapes(m)].filter(([k]) => k.startsWith('text_encoder.'));
        expect(textShapes(pruned.model)).toEqual(textShapes(ref2));
        expect(pruned.model.textEncoder.numParams()).toBe(ref2.textEncoder.numParams());
        expect(pruned.model.textEncoder.numParams()).toBeLessThan(model.textEncoder.numParams());
        expect(pruned.model.imageEncoder.numParams()).toBe(model.imageEncoder.numParams());
        ref2.dispose();
      } finally {
        pruned.model.dispose();
      }

      expectMasksRemoved(model, handle, norms);
      expect(text(model, toks)).toEqual(ref);

      model.dispose();
      disposeSet(set);
      toks.dispose();
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  test('all-ones masks leave the output unchanged (masked and pruned)', () => {
    const before = tf.memory().numTensors;
    for (const base of ['mobileclip_tiny', 'mobileclip_tiny_base'] as const) {
      const model = new CLIP(microConfig(base), { seed: 4 });
      randomise(model);
      model.eval();
      const toks = tokens();
      const ref = text(model, toks);
      const sizes = textMaskSizes(model);
      const values: TextMaskValues = { hidden: ones(sizes.hidden), layers: sizes.layers.map((l) => ({ heads: l.heads === null ? undefined : ones(l.heads), ffn: ones(l.ffn) })) };
      const set = toTensors(values);
      const handle = applyTextMasks(model, set);
      expect(relErr(text(model, toks), ref)).toBeLessThanOrEqual(1e-6);
      const pruned = pruneText(model, values);
      expect(pruned.model.textEncoder.numParams()).toBe(model.textEncoder.numParams());
      expect(relErr(text(pruned.model, toks), ref)).toBeLessThanOrEqual(1e-6);
      pruned.model.dispose();
      handle.remove();
      expect(text(model, toks)).toEqual(ref);
      model.dispose();
      disposeSet(set);
      toks.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  test('setMasks: the hooks read the current set; another layout or size is refused', () => {
    const before = tf.memory().numTensors;
    const cfg = microConfig('mobileclip_tiny');
    const model = new CLIP(cfg, { seed: 5 });
    randomise(model);
    model.eval();
    const toks = tokens();
    const a = CASES[0].masks(cfg);
    const b: TextMaskValues = { hidden: pattern(64, (j) => j % 9 === 4, 6), layers: [{ ffn: pattern(256, (j) => j % 6 === 0, 7) }, { heads: Float32Array.of(0.2, 0.9), ffn: pattern(256, (j) => j % 2 === 1, 1) }, null] };
    const sa = toTensors(a);
    const sb = toTensors(b);

    const fresh = applyTextMasks(model, sb);
    const wantB = text(model, toks);
    fresh.remove();

    const handle = applyTextMasks(model, sa);
    const gotA = text(model, toks);
    handle.setMasks(sb);
    expect(handle.masks).toBe(sb);
    expect(text(model, toks)).toEqual(wantB);
    handle.setMasks(sa);
    expect(text(model, toks)).toEqual(gotA);

    const noHidden: TextMaskSet = { layers: sa.layers };
    expect(() => handle.setMasks(noHidden)).toThrow(/another layout/);
    const short = tf.ones([32]) as tf.Tensor1D;
    expect(() => handle.setMasks({ ...sa, hidden: short })).toThrow(/hidden has 32 entries, expected 64/);
    expect(() => applyTextMasks(model, { layers: [{ heads: short }, null, null] })).toThrow(/RepMixer block takes only hidden and ffn/);
    expect(() => applyTextMasks(model, { layers: [null] })).toThrow(/1 layer entries for a text tower of 3 layers/);
    handle.remove();
    expect(() => handle.setMasks(sa)).toThrow(/after remove/);

    tf.dispose(short);
    model.dispose();
    disposeSet(sa);
    disposeSet(sb);
    toks.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  for (const base of ['mobileclip_tiny', 'mobileclip_tiny_base'] as const) {
    test(`masks as variables get finite, non-zero gradients (${base}, train mode)`, () => {
      const before = tf.memory().numTensors;
      const cfg = microConfig(base);
      const model = new CLIP(cfg, { seed: 6 });
      randomise(model);
      model.train();
      const toks = tokens();
      const values = base === 'mobileclip_tiny' ? CASES[0].masks(cfg) : CASES[2].masks(cfg);
      const { make: v, vars } = maskVariables();
      const set: TextMaskSet = { hidden: v(values.hidden), layers: values.layers.map((l) => l && { heads: v(l.heads), ffn: v(l.ffn) }) };
      const handle = applyTextMasks(model, set);
      expectMaskGradients(() => model.encodeText(toks), vars, [4, cfg.embedDim]);
      handle.remove();
      model.dispose();
      tf.dispose(vars);
      toks.dispose();
      expect(tf.memory().numTensors).toBe(before);
    });
  }
});
