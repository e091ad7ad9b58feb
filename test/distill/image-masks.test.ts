/**
 * TinyCLIP image masks (methods.md §3.3, §3.7, §3.8) on the micro MCi towers — even and uneven, unfused and
 * reparameterised — with hand-chosen masks that zero some stage channels (respecting the PatchEmbed coupling:
 * both children of every kept channel, or one), ConvFFN units and heads and leave fractional values elsewhere:
 * in eval mode with non-trivial BN statistics the masked model (hooks) and the physically pruned one give the
 * same image embeddings, the pruned one has the expected widths and parameter count, all-ones masks change
 * nothing, `remove()` restores the exact outputs, the masks receive gradients in train mode, and no tensor leaks.
 */
import { beforeAll, describe, expect, test } from 'vitest';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { CLIP } from '../../src/base/model/clip.js';
import { mciStages, type ClipConfig, type MciStageConfig } from '../../src/base/model/configs.js';
import { reparameterize } from '../../src/base/model/reparameterize.js';
import { expectedShapes } from '../../src/base/model/state-dict.js';
import { applyImageMasks, imageMaskSizes, imageMaskValues, type ImageMaskSet, type ImageMaskValues } from '../../src/distill/masks/image-masks.js';
import { imageCoupling, pruneImage } from '../../src/distill/masks/prune-image.js';
import { microConfig, unevenMicroConfig } from '../micro-config.js';
import { relErr as relErrOf } from '../model/helpers.js';
import { expectMaskGradients, maskVariables } from './mask-helpers.js';

/** Non-trivial BN statistics and affines, and layer scales, so every sliced and folded tensor matters. */
function randomise(model: CLIP): void {
  let seed = 17;
  for (const [name, p] of model.namedParams()) {
    if (p.variable.dtype !== 'float32' || !name.startsWith('image_encoder.')) continue;
    tf.tidy(() => {
      const r = tf.randomUniform(p.variable.shape, 0, 1, 'float32', seed++);
      if (/running_var$/.test(name)) p.variable.assign(r.mul(1.5).add(0.5));
      else if (/running_mean$|(bn|rbr_skip|norm)\.bias$/.test(name)) p.variable.assign(r.sub(0.5));
      else if (/(bn|rbr_skip|norm)\.weight$/.test(name)) p.variable.assign(r.add(0.5));
      else if (/layer_scale/.test(name)) p.variable.assign(r.mul(0.8).add(0.1));
    });
  }
}

function images(): tf.Tensor4D {
  return tf.randomUniform([2, 32, 32, 3], 0, 1, 'float32', 5) as tf.Tensor4D;
}

function embed(model: CLIP, x: tf.Tensor4D): Float32Array {
  return tf.tidy(() => Float32Array.from(model.encodeImage(x).dataSync() as Float32Array));
}

/** max|got − want| / max|want| (the shared helper takes the reference first). */
const relErr = (got: Float32Array, want: Float32Array): number => relErrOf(want, got);

const SOFT = [1, 0.3, 0.55, 0.8, 0.95, 0.65, 1, 0.42];
/** n fractional values in [0.3, 1] (some exactly 1), zero at `zeros`. */
function pattern(n: number, zeros: (j: number) => boolean, seed = 0): Float32Array {
  return Float32Array.from({ length: n }, (_, j) => (zeros(j) ? 0 : SOFT[(j * 5 + seed) % 8]));
}

/**
 * A channel mask for the stage after one with mask `prev` (channel multiplier m): channel o kept iff its input
 * ⌊o/m⌋ is kept and `pick(⌊o/m⌋, o mod m)`.
 */
function coupled(prev: Float32Array, m: number, pick: (c: number, r: number) => boolean, seed: number): Float32Array {
  return pattern(prev.length * m, (o) => prev[Math.floor(o / m)] === 0 || !pick(Math.floor(o / m), o % m), seed);
}

const ones = (n: number): Float32Array => new Float32Array(n).fill(1);
const count = (z: Float32Array | undefined, n: number): number => (z ? z.filter((x) => x !== 0).length : n);
const both = (): boolean => true;
const one = (c: number, r: number): boolean => r === c % 2;

function toTensors(v: ImageMaskValues): ImageMaskSet {
  const t = (a: Float32Array | undefined): tf.Tensor1D | undefined => a && tf.tensor1d(a);
  return { stages: v.stages.map((s) => ({ channels: t(s.channels), blocks: s.blocks.map((b) => b && { heads: t(b.heads), ffn: t(b.ffn) }) })) };
}

function disposeSet(s: ImageMaskSet): void {
  tf.dispose(s.stages.flatMap((st) => [st.channels, ...st.blocks.flatMap((b) => [b?.heads, b?.ffn])]).filter((t): t is tf.Tensor1D => t !== undefined));
}

/** The pruned stages, worked out here from the masks (nothing left: 1 head of width 1 / 1 unit). */
function expectedStages(cfg: ClipConfig, v: ImageMaskValues): MciStageConfig[] {
  if (cfg.image.kind !== 'mci') throw new Error('expected MCi');
  return mciStages(cfg.image).map((st, s) => {
    const m = v.stages[s];
    const out: MciStageConfig = { ...st, width: count(m.channels, st.width), ffnDims: st.ffnDims.map((f, j) => Math.max(1, count(m.blocks[j]?.ffn, f))) };
    if (st.mixer === 'attention') {
      const heads = count(m.blocks[0]?.heads, st.heads ?? 0);
      out.heads = Math.max(1, heads);
      out.headDim = heads === 0 ? 1 : st.headDim;
    }
    return out;
  });
}

interface Case {
  name: string;
  config: () => ClipConfig;
  fused?: boolean;
  masks: () => ImageMaskValues;
  /** Some SE keeps more hidden units than a fresh model of the pruned config would build. */
  seKept?: boolean;
}

/** Micro widths 8/16/32/64: stage 1 keeps both children, stage 2 one of each pair, stage 3 both. */
function microMasks(seed: number, heads: Float32Array): ImageMaskValues {
  const c0 = pattern(8, (j) => j === 3, seed);
  const c1 = coupled(c0, 2, both, seed + 1);
  const c2 = coupled(c1, 2, one, seed + 2);
  const c3 = coupled(c2, 2, both, seed + 3);
  return {
    stages: [
      { channels: c0, blocks: [{ ffn: pattern(24, (j) => j % 5 === 2, seed) }] },
      { channels: c1, blocks: [null] },
      { channels: c2, blocks: [{ ffn: pattern(96, (j) => j % 3 === 0, seed + 4) }] },
      { channels: c3, blocks: [{ heads, ffn: pattern(192, (j) => j % 4 === 1, seed + 5) }] },
    ],
  };
}

const CASES: Case[] = [
  { name: 'micro', config: () => microConfig(), masks: () => microMasks(0, Float32Array.of(0.7, 0, 1, 0.5)), seKept: true },
  { name: 'micro, reparameterised', config: () => microConfig(), fused: true, masks: () => microMasks(3, Float32Array.of(0, 0.85, 0, 0.6)), seKept: true },
  {
    // uneven: stage 2 has two blocks (ConvFFN 64 and 100), the attention stage 3 heads of 16 and ConvFFN 150.
    name: 'uneven micro: all heads pruned, one ConvFFN emptied, stage 0 unmasked',
    config: () => unevenMicroConfig(),
    masks: () => {
      const c1 = coupled(ones(8), 2, one, 1); // stage 0 keeps everything: stage 1 one child of each
      const c2 = coupled(c1, 2, both, 2);
      const c3 = coupled(c2, 2, one, 3);
      return {
        stages: [
          { blocks: [{ ffn: pattern(24, (j) => j % 2 === 0, 1) }] },
          { channels: c1, blocks: [{ ffn: pattern(40, (j) => j < 10, 2) }] },
          { channels: c2, blocks: [{ ffn: new Float32Array(64) }, { ffn: pattern(100, (j) => j % 7 === 3, 4) }] },
          { channels: c3, blocks: [{ heads: new Float32Array(3), ffn: pattern(150, (j) => j % 3 === 2, 5) }] },
        ],
      };
    },
  },
  {
    name: 'uneven micro, reparameterised: heads and ConvFFNs only',
    config: () => unevenMicroConfig(),
    fused: true,
    masks: () => ({
      stages: [
        { blocks: [null] },
        { blocks: [{ ffn: pattern(40, (j) => j % 4 === 0, 2) }] },
        { blocks: [null, { ffn: pattern(100, (j) => j % 2 === 1, 4) }] },
        { blocks: [{ heads: Float32Array.of(0.5, 0, 0.9), ffn: pattern(150, (j) => j % 5 === 0, 5) }] },
      ],
    }),
  },
];

const imageShapes = (m: CLIP): Array<[string, number[]]> => [...expectedShapes(m)].filter(([k]) => k.startsWith('image_encoder.'));
const isSe = (k: string): boolean => /\.se\./.test(k);

describe('TinyCLIP image masks', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true });
  });

  for (const c of CASES) {
    test(`${c.name}: masked == pruned (eval), smaller widths and params; remove() restores; no leaks`, () => {
      const before = tf.memory().numTensors;
      const cfg = c.config();
      const model = new CLIP(cfg, { seed: 3 });
      randomise(model);
      model.eval();
      if (c.fused) reparameterize(model);
      const x = images();
      const ref = embed(model, x);

      const values = c.masks();
      const set = toTensors(values);
      const handle = applyImageMasks(model, set);
      const masked = embed(model, x);
      expect(relErr(masked, ref)).toBeGreaterThan(1e-2); // the masks do something

      const pruned = pruneImage(model, imageMaskValues(set));
      try {
        expect(pruned.model.training).toBe(false);
        const got = embed(pruned.model, x);
        expect(relErr(got, masked)).toBeLessThan(1e-5);

        // per-stage widths, and every shape against a model of the architecture expected from the masks
        const want = expectedStages(cfg, values);
        if (pruned.config.image.kind !== 'mci') throw new Error('expected MCi');
        expect(mciStages(pruned.config.image).map(({ seWidth: _se, ...st }) => st)).toEqual(want);
        if (cfg.image.kind !== 'mci') throw new Error('expected MCi');
        const ref2 = new CLIP({ ...cfg, image: { ...cfg.image, stages: want } }, { inferenceMode: c.fused });
        const got2 = imageShapes(pruned.model);
        const want2 = imageShapes(ref2);
        expect(got2.filter(([k]) => !isSe(k))).toEqual(want2.filter(([k]) => !isSe(k)));
        // SEs keep their source's hidden width (the pruned channels cut out of their in/out sides)
        const src = new Map(imageShapes(model));
        let seDelta = 0;
        const wantSe = new Map(want2.filter(([k]) => isSe(k)));
        for (const [k, s] of got2.filter(([k]) => isSe(k))) {
          const w = wantSe.get(k)!;
          if (/\.(fc1|reduce)\.(weight|bias)$/.test(k)) expect(s[0]).toBe(src.get(k)![0]);
          if (/\.(fc2|expand)\.weight$/.test(k)) expect(s[1]).toBe(src.get(k)![1]);
          expect(s.length).toBe(w.length);
          seDelta += s.reduce((a, b) => a * b, 1) - w.reduce((a, b) => a * b, 1);
        }
        if (c.seKept) expect(seDelta).toBeGreaterThan(0);
        expect(pruned.model.imageEncoder.numParams()).toBe(ref2.imageEncoder.numParams() + seDelta);
        expect(pruned.model.imageEncoder.numParams()).toBeLessThan(model.imageEncoder.numParams());
        expect(pruned.model.textEncoder.numParams()).toBe(model.textEncoder.numParams());
        ref2.dispose();
        // the config alone (SE widths included) builds the pruned model's every shape: any loader reads it
        const fromConfig = new CLIP(pruned.config, { inferenceMode: c.fused });
        expect(imageShapes(fromConfig)).toEqual(got2);
        fromConfig.dispose();
      } finally {
        pruned.model.dispose();
      }

      handle.remove();
      handle.remove(); // idempotent
      expect(model.hasHooks()).toBe(false);
      expect(embed(model, x)).toEqual(ref);

      model.dispose();
      disposeSet(set);
      x.dispose();
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  test('all-ones masks leave the output unchanged (masked and pruned)', () => {
    const before = tf.memory().numTensors;
    const model = new CLIP(unevenMicroConfig(), { seed: 4 });
    randomise(model);
    model.eval();
    const x = images();
    const ref = embed(model, x);
    const sizes = imageMaskSizes(model);
    const values: ImageMaskValues = {
      stages: sizes.stages.map((s) => ({ channels: ones(s.channels), blocks: s.blocks.map((b) => ({ heads: b.heads === null ? undefined : ones(b.heads), ffn: ones(b.ffn) })) })),
    };
    const set = toTensors(values);
    const handle = applyImageMasks(model, set);
    expect(relErr(embed(model, x), ref)).toBeLessThanOrEqual(1e-6); // hooks turn the inference folds off: rounding only
    const pruned = pruneImage(model, values);
    expect(pruned.model.imageEncoder.numParams()).toBe(model.imageEncoder.numParams());
    expect(relErr(embed(pruned.model, x), ref)).toBeLessThanOrEqual(1e-6);
    pruned.model.dispose();
    handle.remove();
    expect(embed(model, x)).toEqual(ref);
    model.dispose();
    disposeSet(set);
    x.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  test('setMasks swaps the set; other layouts and sizes, and masks breaking the PatchEmbed coupling, are refused', () => {
    const before = tf.memory().numTensors;
    const model = new CLIP(microConfig(), { seed: 5 });
    randomise(model);
    model.eval();
    const x = images();
    const sa = toTensors(microMasks(0, Float32Array.of(0.7, 0, 1, 0.5)));
    const sb = toTensors(microMasks(2, Float32Array.of(0.2, 0.9, 0, 1)));
    const fresh = applyImageMasks(model, sb);
    const wantB = embed(model, x);
    fresh.remove();

    const handle = applyImageMasks(model, sa);
    const gotA = embed(model, x);
    handle.setMasks(sb);
    expect(handle.masks).toBe(sb);
    expect(embed(model, x)).toEqual(wantB);
    handle.setMasks(sa);
    expect(embed(model, x)).toEqual(gotA);
    expect(() => handle.setMasks({ stages: [{ blocks: [null] }, ...sa.stages.slice(1)] })).toThrow(/another layout/);
    const short = tf.ones([4]) as tf.Tensor1D;
    expect(() => handle.setMasks({ stages: [{ ...sa.stages[0], channels: short }, ...sa.stages.slice(1)] })).toThrow(/stages\[0\]\.channels has 4 entries, expected 8/);
    expect(() => applyImageMasks(model, { stages: [{ blocks: [{ heads: short }] }, ...sa.stages.slice(1)] })).toThrow(/RepMixer block takes only an ffn mask/);
    expect(() => applyImageMasks(model, { stages: sa.stages.slice(1) })).toThrow(/3 stage entries for an MCi tower of 4 stages/);
    handle.remove();
    expect(() => handle.setMasks(sa)).toThrow(/after remove/);

    // stage 1 keeps a channel whose input is pruned; stage 2 keeps both children of some channels, one of others
    const c0 = pattern(8, (j) => j === 3);
    expect(imageCoupling([c0, pattern(16, (j) => j === 0)], [8, 16])[0]).toMatch(/stage 1 keeps channel 6, which reads channel 3 of stage 0, pruned/);
    expect(imageCoupling([undefined, pattern(16, (j) => j === 0)], [8, 16])[0]).toMatch(/keeps 1 or 2 of the 2 channels/);
    expect(imageCoupling([c0, coupled(c0, 2, both, 1)], [8, 16])).toEqual([]);
    const bad = imageMaskValues(sa);
    const s1 = bad.stages[1].channels!;
    s1[0] = 0; // channel 0 of stage 1 pruned, its sibling 1 kept
    expect(() => pruneImage(model, bad)).toThrow(/break the PatchEmbed coupling: stage 1 keeps 1 or 2 of the 2 channels/);

    tf.dispose(short);
    model.dispose();
    disposeSet(sa);
    disposeSet(sb);
    x.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  test('masks as variables get finite, non-zero gradients (train mode)', () => {
    const before = tf.memory().numTensors;
    const cfg = microConfig();
    const model = new CLIP(cfg, { seed: 6 });
    randomise(model);
    model.train();
    const x = images();
    const values = microMasks(0, Float32Array.of(0.7, 0, 1, 0.5));
    const { make: v, vars } = maskVariables();
    const set: ImageMaskSet = { stages: values.stages.map((s) => ({ channels: v(s.channels), blocks: s.blocks.map((b) => b && { heads: v(b.heads), ffn: v(b.ffn) }) })) };
    const handle = applyImageMasks(model, set);
    expectMaskGradients(() => model.encodeImage(x), vars, [2, cfg.embedDim]);
    handle.remove();
    model.dispose();
    tf.dispose(vars);
    x.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
