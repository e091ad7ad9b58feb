/**
 * TinyCLIP masks on the ViT image tower (methods.md §3.3, §3.4, §3.7) on micro ViTs — even (2 blocks × 4 heads
 * of 16, width 64), uneven (per-block heads, head widths and FFN widths, and a 3×3 patch grid read through the
 * resized 2×2 positional table) and one wide enough (192) that its pruned width no longer derives the source's
 * stem width — with hand-chosen masks that zero some hidden channels, heads and FFN units and leave fractional
 * values elsewhere: in eval mode the masked model (hooks and masked LayerNorms) and the physically pruned one
 * give the same image embeddings, the pruned one has the expected widths and the hand-counted parameter count,
 * all-ones masks change nothing, `remove()` restores the exact outputs, the gates give N₀ = vitPrunableSize and
 * gradients to ln α, and no tensor leaks.
 */
import { beforeAll, describe, expect, test } from 'vitest';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { CLIP } from '../../src/base/model/clip.js';
import { vitBlocks, type ClipConfig, type TransformerLayerConfig, type VitConfig } from '../../src/base/model/configs.js';
import { exportStateDict, expectedShapes } from '../../src/base/model/state-dict.js';
import { LayerNorm } from '../../src/base/layers/layer-norm.js';
import { MaskedLayerNorm } from '../../src/distill/masks/masked-layer-norm.js';
import { applyViTMasks, vitBlocksOf, vitMaskSizes, vitMaskValues, type ViTMaskSet, type ViTMaskValues } from '../../src/distill/masks/vit-masks.js';
import { pruneViT, pruneViTStateDict } from '../../src/distill/masks/prune-vit.js';
import { vitStemWidth } from '../../src/base/model/vit.js';
import { ViTGates, vitPrunableSize } from '../../src/distill/masks/vit-gates.js';
import { microConfig } from '../micro-config.js';
import { relErr as relErrOf } from '../model/helpers.js';
import { expectMaskGradients, expectMasksRemoved } from './mask-helpers.js';

/** The causal `base` micro text tower with a ViT image tower `image` (embedding 64). */
function vitConfig(image: Omit<VitConfig, 'kind' | 'name'>, name = 'vit_micro'): ClipConfig {
  const cfg = microConfig('mobileclip_tiny_base');
  cfg.name = name;
  cfg.image = { kind: 'vit', name, ...image };
  return cfg;
}

const microVit = (): ClipConfig => vitConfig({ imageSize: 32, embedDim: 64, layers: 2, heads: 4, posGrid: 2 });
const unevenVit = (): ClipConfig =>
  vitConfig(
    {
      imageSize: 48,
      embedDim: 64,
      layers: 3,
      heads: 3,
      posGrid: 2,
      blocks: [
        { heads: 3, headDim: 16, ffnDim: 80 },
        { heads: 2, headDim: 8, ffnDim: 150 },
        { heads: 4, headDim: 16, ffnDim: 256 },
      ],
    },
    'vit_uneven',
  );
const wideVit = (): ClipConfig => vitConfig({ imageSize: 32, embedDim: 192, layers: 1, heads: 3, posGrid: 2 }, 'vit_wide');

/** Non-trivial LayerNorm affines, stem BN statistics, CLS token and biases, so every sliced and folded tensor matters. */
function randomise(model: CLIP): void {
  let seed = 23;
  for (const [name, p] of model.namedParams()) {
    if (p.variable.dtype !== 'float32' || !name.startsWith('image_encoder.')) continue;
    tf.tidy(() => {
      const r = tf.randomUniform(p.variable.shape, 0, 1, 'float32', seed++);
      if (/running_var$/.test(name)) p.variable.assign(r.mul(1.5).add(0.5));
      else if (/running_mean$|norm\.bias$/.test(name)) p.variable.assign(r.sub(0.5));
      else if (/norm\.weight$/.test(name)) p.variable.assign(r.add(0.5));
      else if (/(pre_norm_(mha|ffn)\.0|post_transformer_norm)\.weight$/.test(name)) p.variable.assign(r.add(0.5));
      else if (/(pre_norm_(mha|ffn)\.0|post_transformer_norm)\.bias$/.test(name)) p.variable.assign(r.sub(0.5).mul(0.4));
      else if (/cls_token$|\.bias$/.test(name)) p.variable.assign(r.sub(0.5).mul(0.5));
    });
  }
}

function images(size: number): tf.Tensor4D {
  return tf.randomUniform([2, size, size, 3], 0, 1, 'float32', 5) as tf.Tensor4D;
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

const ones = (n: number): Float32Array => new Float32Array(n).fill(1);
const count = (z: Float32Array | undefined, n: number): number => (z ? z.filter((x) => x !== 0).length : n);

function toTensors(v: ViTMaskValues): ViTMaskSet {
  const t = (a: Float32Array | undefined): tf.Tensor1D | undefined => a && tf.tensor1d(a);
  return { hidden: t(v.hidden), blocks: v.blocks.map((b) => b && { heads: t(b.heads), ffn: t(b.ffn) }) };
}

function disposeSet(s: ViTMaskSet): void {
  tf.dispose([s.hidden, ...s.blocks.flatMap((b) => [b?.heads, b?.ffn])].filter((t): t is tf.Tensor1D => t !== undefined));
}

function vit(cfg: ClipConfig): VitConfig {
  if (cfg.image.kind !== 'vit') throw new Error('expected a ViT');
  return cfg.image;
}

/** The pruned blocks, worked out here from the masks (nothing left: 1 head of width 1 / 1 unit). */
function expectedBlocks(cfg: ClipConfig, v: ViTMaskValues): TransformerLayerConfig[] {
  return vitBlocks(vit(cfg)).map((b, i) => {
    const m = v.blocks[i];
    const heads = count(m?.heads, b.heads);
    return { heads: Math.max(1, heads), headDim: heads === 0 ? 1 : b.headDim, ffnDim: Math.max(1, count(m?.ffn, b.ffnDim)) };
  });
}

/**
 * Trainable parameters of a ViT image tower, counted by hand: CLS e; stem conv 3→s 4×4 (no bias) + BN, conv
 * s→s 2×2 + BN, conv s→e 2×2 + bias; positions N·e; per block two LayerNorms 4e, qkv 3·h·d_h·(e + 1), out_proj
 * h·d_h·e + e, fc1 F·(e + 1), fc2 F·e + e; final LayerNorm 2e; projection e·P.
 */
function handCount(e: number, stem: number, blocks: readonly TransformerLayerConfig[], positions: number, proj: number): number {
  const stemN = stem * 3 * 16 + 2 * stem + stem * stem * 4 + 2 * stem + e * stem * 4 + e;
  const perBlock = (b: TransformerLayerConfig): number => {
    const inner = b.heads * b.headDim;
    return 4 * e + 3 * inner * (e + 1) + inner * e + e + b.ffnDim * (e + 1) + b.ffnDim * e + e;
  };
  return e + stemN + positions * e + blocks.reduce((s, b) => s + perBlock(b), 0) + 2 * e + e * proj;
}

/** LayerNorm paths of the image tower. */
function normPaths(model: CLIP): string[] {
  return model.namedModules().flatMap(([p, m]) => (p.startsWith('image_encoder.') && m instanceof LayerNorm ? [p] : []));
}

interface Case {
  name: string;
  config: () => ClipConfig;
  masks: (cfg: ClipConfig) => ViTMaskValues;
}

const CASES: Case[] = [
  {
    name: 'micro ViT: hidden, heads and FFN masks in both blocks',
    config: microVit,
    masks: () => ({
      hidden: pattern(64, (j) => [3, 10, 17, 40, 41, 63].includes(j)),
      blocks: [
        { heads: Float32Array.of(0.7, 0, 1, 0.45), ffn: pattern(256, (j) => j % 3 === 0, 2) },
        { heads: Float32Array.of(0, 0.85, 0, 0.6), ffn: pattern(256, (j) => j % 4 === 1, 5) },
      ],
    }),
  },
  {
    name: 'micro ViT: all heads of block 0 and all FFN units of block 1 pruned',
    config: microVit,
    masks: () => ({
      hidden: pattern(64, (j) => j % 7 === 0, 2),
      blocks: [
        { heads: new Float32Array(4), ffn: pattern(256, (j) => j % 2 === 0, 3) },
        { heads: Float32Array.of(0.5, 0, 1, 0.9), ffn: new Float32Array(256) },
      ],
    }),
  },
  {
    name: 'uneven ViT (per-block heads and widths, resized positions), one block unmasked',
    config: unevenVit,
    masks: () => ({
      hidden: pattern(64, (j) => j % 5 === 3, 1),
      blocks: [{ heads: Float32Array.of(0.3, 0, 0.9), ffn: pattern(80, (j) => j % 3 === 1, 4) }, null, { ffn: pattern(256, (j) => j < 100, 6) }],
    }),
  },
  {
    name: 'wide ViT (192): the pruned width derives another stem, which is kept',
    config: wideVit,
    masks: () => ({ hidden: pattern(192, (j) => j % 4 === 1, 3), blocks: [{ heads: Float32Array.of(0.6, 0, 1), ffn: pattern(768, (j) => j % 3 === 2, 1) }] }),
  },
  {
    name: 'micro ViT: heads and FFN masks only (no hidden mask: nothing replaced, width kept)',
    config: microVit,
    masks: () => ({ blocks: [{ heads: Float32Array.of(0.7, 0, 1, 0.45) }, { ffn: pattern(256, (j) => j % 3 === 0, 2) }] }),
  },
];

describe('TinyCLIP ViT masks', () => {
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true });
  });

  for (const c of CASES) {
    test(`${c.name}: masked == pruned, hand-counted params; remove() restores; no leaks`, () => {
      const before = tf.memory().numTensors;
      const cfg = c.config();
      const v0 = vit(cfg);
      const model = new CLIP(cfg, { seed: 3 });
      randomise(model);
      model.eval();
      const x = images(v0.imageSize);
      const norms = normPaths(model);
      const ref = embed(model, x);

      const values = c.masks(cfg);
      const set = toTensors(values);
      const handle = applyViTMasks(model, set);
      expect(norms.every((p) => model.get(p) instanceof MaskedLayerNorm)).toBe(values.hidden !== undefined);
      const masked = embed(model, x);
      expect(relErr(masked, ref)).toBeGreaterThan(1e-2); // the masks do something

      const pruned = pruneViT(model, vitMaskValues(set));
      try {
        const got = embed(pruned.model, x);
        expect(relErr(got, masked)).toBeLessThan(1e-5);

        // widths and parameter count, against the architecture and the count worked out by hand from the masks
        const e = count(values.hidden, v0.embedDim);
        const blocks = expectedBlocks(cfg, values);
        const pv = vit(pruned.config);
        expect(pv.embedDim).toBe(e);
        expect(vitBlocks(pv)).toEqual(blocks);
        const stem = vitStemWidth(v0.embedDim);
        const positions = v0.posGrid * v0.posGrid;
        expect(model.imageEncoder.numParams()).toBe(handCount(v0.embedDim, stem, vitBlocks(v0), positions, cfg.embedDim));
        expect(pruned.model.imageEncoder.numParams()).toBe(handCount(e, stem, blocks, positions, cfg.embedDim));
        expect(pruned.model.imageEncoder.numParams()).toBeLessThan(model.imageEncoder.numParams());
        expect(pruned.model.textEncoder.numParams()).toBe(model.textEncoder.numParams());
        // The stem keeps the source's width, and the config says so when it is not the derived one: a model
        // built from the config alone has every shape of the pruned model.
        const sd = pruned.stateDict.get('image_encoder.model.patch_emb.0.block.conv.weight');
        expect(sd?.shape[0]).toBe(stem);
        expect(pv.stemDim).toBe(vitStemWidth(e) === stem ? undefined : stem);
        const fresh = new CLIP(pruned.config);
        const imageShapes = (m: CLIP) => [...expectedShapes(m)].filter(([k]) => k.startsWith('image_encoder.'));
        expect(imageShapes(fresh)).toEqual(imageShapes(pruned.model));
        fresh.dispose();
      } finally {
        pruned.model.dispose();
      }

      expectMasksRemoved(model, handle, norms);
      expect(embed(model, x)).toEqual(ref);

      model.dispose();
      disposeSet(set);
      x.dispose();
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  test('all-ones masks leave the output unchanged (masked and pruned)', () => {
    const before = tf.memory().numTensors;
    for (const make of [microVit, unevenVit]) {
      const cfg = make();
      const model = new CLIP(cfg, { seed: 4 });
      randomise(model);
      model.eval();
      const x = images(vit(cfg).imageSize);
      const ref = embed(model, x);
      const sizes = vitMaskSizes(model);
      const blocks = sizes.blocks.map((b) => ({ heads: ones(b.heads), ffn: ones(b.ffn) }));

      // Head and FFN masks of ones: bit-identical.
      const unitSet = toTensors({ blocks });
      let handle = applyViTMasks(model, unitSet);
      expect(embed(model, x)).toEqual(ref);
      handle.remove();

      // With a hidden mask of ones: the masked LayerNorm's own ops, equal to rounding.
      const values: ViTMaskValues = { hidden: ones(sizes.hidden), blocks };
      const set = toTensors(values);
      handle = applyViTMasks(model, set);
      expect(relErr(embed(model, x), ref)).toBeLessThanOrEqual(1e-6);

      // Pruned by ones: the same architecture and weights, bit-identical.
      const pruned = pruneViT(model, values);
      expect(pruned.model.imageEncoder.numParams()).toBe(model.imageEncoder.numParams());
      expect(embed(pruned.model, x)).toEqual(ref);
      pruned.model.dispose();
      handle.remove();
      expect(embed(model, x)).toEqual(ref);
      model.dispose();
      disposeSet(set);
      disposeSet(unitSet);
      x.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  test('setMasks: the hooks read the current set; other layouts, sizes and towers are refused', () => {
    const before = tf.memory().numTensors;
    const cfg = microVit();
    const model = new CLIP(cfg, { seed: 5 });
    randomise(model);
    model.eval();
    const x = images(32);
    const a = CASES[0].masks(cfg);
    const b: ViTMaskValues = { hidden: pattern(64, (j) => j % 9 === 4, 6), blocks: [{ heads: Float32Array.of(0.2, 0.9, 0, 1), ffn: pattern(256, (j) => j % 6 === 0, 7) }, { heads: Float32Array.of(1, 1, 0.5, 0), ffn: pattern(256, (j) => j % 2 === 1, 1) }] };
    const sa = toTensors(a);
    const sb = toTensors(b);

    const fresh = applyViTMasks(model, sb);
    const wantB = embed(model, x);
    fresh.remove();

    const handle = applyViTMasks(model, sa);
    const gotA = embed(model, x);
    handle.setMasks(sb);
    expect(handle.masks).toBe(sb);
    expect(embed(model, x)).toEqual(wantB);
    handle.setMasks(sa);
    expect(embed(model, x)).toEqual(gotA);

    expect(() => handle.setMasks({ blocks: sa.blocks })).toThrow(/another layout/);
    const short = tf.ones([32]) as tf.Tensor1D;
    expect(() => handle.setMasks({ ...sa, hidden: short })).toThrow(/hidden has 32 entries, expected 64/);
    expect(() => applyViTMasks(model, { blocks: [{ heads: short }, null] })).toThrow(/blocks\[0\]\.heads has 32 entries, expected 4/);
    expect(() => applyViTMasks(model, { blocks: [null] })).toThrow(/1 block entries for a ViT of 2 blocks/);
    handle.remove();
    expect(() => handle.setMasks(sa)).toThrow(/after remove/);
    expect(() => pruneViT(model, { hidden: new Float32Array(64), blocks: [null, null] })).toThrow(/prunes every ViT channel/);
    expect(() => pruneViT(model, { blocks: [{ ffn: Float32Array.of(2) }, null] })).toThrow(/blocks\[0\]\.ffn has 1 entries, expected 256/);

    // An MCi image tower: one-line errors from masks, gates and the pruner.
    const mciCfg = microConfig('mobileclip_tiny_base');
    const mci = new CLIP(mciCfg);
    expect(() => applyViTMasks(mci, { blocks: [] })).toThrow(/image tower is a FastViT; ViT masks apply to ViT image towers/);
    expect(() => new ViTGates(mci)).toThrow(/ViT masks apply to ViT image towers/);
    expect(() => pruneViTStateDict(exportStateDict(mci), mciCfg, { blocks: [] })).toThrow(/the image tower is mci/);
    mci.dispose();

    tf.dispose(short);
    model.dispose();
    disposeSet(sa);
    disposeSet(sb);
    x.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  test('gates: N₀ = vitPrunableSize = E[N] when open; ln α get gradients in train mode; eval masks prune exactly', () => {
    const before = tf.memory().numTensors;
    const cfg = unevenVit();
    const model = new CLIP(cfg, { seed: 6 });
    randomise(model);
    const x = images(48);

    // N₀: the blocks' parameters without their LayerNorms (4e each), = the gates' full size; E[N] ≈ N₀ when open.
    const n0 = vitPrunableSize(model);
    const e = vit(cfg).embedDim;
    const blocks = vitBlocksOf(model);
    expect(n0).toBe(blocks.reduce((s, m) => s + m.numParams() - 4 * e, 0));
    const open = new ViTGates(model, { name: 'vit_gates_open' });
    const size = tf.tidy(() => {
      const s = open.expectedSize();
      return { full: s.full, expected: s.expected.dataSync()[0] };
    });
    expect(size.full).toBe(n0);
    expect(Math.abs(size.expected - n0) / n0).toBeLessThan(1e-4);
    expect(tf.tidy(() => open.expectedSparsity().dataSync()[0])).toBeLessThan(1e-4);
    open.dispose();

    // Fractional samples (ln α = 0): the masks receive gradients through the hook's draw inside the tape.
    const gates = new ViTGates(model, { seed: 1, initLogAlpha: 0, name: 'vit_gates_grad' });
    expect(gates.logAlphas).toHaveLength(1 + 2 * blocks.length);
    gates.install();
    model.train();
    expectMaskGradients(() => model.encodeImage(x), gates.logAlphas, [2, cfg.embedDim], { every: false });

    // Spread ln α, then eval mode: the deterministic masks, and pruning by them gives the same embeddings.
    let seed = 40;
    for (const la of gates.logAlphas) tf.tidy(() => la.assign(tf.randomUniform(la.shape, -3, 3, 'float32', seed++)));
    gates.clamp();
    model.eval();
    const masked = embed(model, x);
    const det = gates.deterministic();
    expect(det.hidden!.some((v) => v === 0)).toBe(true);
    const pruned = pruneViT(model, det);
    expect(relErr(embed(pruned.model, x), masked)).toBeLessThan(1e-5);
    expect(vitPrunableSize(pruned.model)).toBeLessThan(n0);
    expect(gates.prunedSize()).toBe(vitPrunableSize(pruned.model));
    const viaGates = gates.prune(model);
    expect(embed(viaGates, x)).toEqual(embed(pruned.model, x));
    viaGates.dispose();
    pruned.model.dispose();
    gates.dispose();
    expect(model.hasHooks()).toBe(false);
    model.dispose();
    x.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
