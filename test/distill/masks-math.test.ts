import { beforeAll, describe, expect, test } from 'vitest';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { ParamHolder, type Module } from '../../src/base/nn/module.js';
import { Initializer } from '../../src/base/nn/init.js';
import { AdamW } from '../../src/base/train/adamw.js';
import { lossAndGrads } from '../../src/base/train/step.js';
import { CLIP } from '../../src/base/model/clip.js';
import { TransformerEncoder } from '../../src/base/layers/transformer-encoder.js';
import { RepMixerBlock } from '../../src/base/layers/repmixer-block.js';
import { AttentionBlock } from '../../src/base/layers/attention-block.js';
import { ConvFFN } from '../../src/base/layers/conv-ffn.js';
import { MclipError } from '../../src/errors.js';
import {
  HC_LOG_ALPHA_MAX,
  HC_LOG_ALPHA_MIN,
  HardConcreteGate,
  deterministicMask,
  hardConcreteFromUniform,
  keepProbability,
  keepProbabilityOf,
} from '../../src/distill/masks/hard-concrete.js';
import {
  attentionBlockGeometry,
  attentionBlockSize,
  convFfnSize,
  expectedSparsity,
  fixedSize,
  repMixerBlockGeometry,
  repMixerBlockSize,
  sumSizes,
  tableSize,
  transformerLayerGeometry,
  transformerLayerSize,
  type KeepProbs,
  type SizeTerm,
} from '../../src/distill/masks/expected-size.js';
import {
  LAMBDA_GROUP,
  MASK_GROUP,
  SparsityLagrangian,
  lagrangianLoss,
  maskParamGroups,
  sparsityTerm,
  stopMaskLearningAt,
  targetSparsity,
  type LagrangianForm,
} from '../../src/distill/masks/lagrangian.js';
import { syntheticBatch, TEST_TEACHER_WIDTH } from '../train/synthetic-batch.js';
import { MICRO_CONTEXT, microConfig } from '../micro-config.js';

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
const num = (t: tf.Tensor) => t.dataSync()[0];

/** E[N] as a number and N₀ of a size term, disposing it. */
function read(t: SizeTerm): [number, number] {
  const e = num(t.expected);
  t.expected.dispose();
  return [e, t.full];
}

/** Trainable parameters of `m` whose names `keep` accepts. */
function counted(m: Module, keep: (name: string) => boolean = () => true): number {
  return m
    .namedParams()
    .filter(([n, p]) => p.trainable && keep(n))
    .reduce((s, [, p]) => s + p.variable.size, 0);
}

const notLayerNorm = (n: string) => !/^pre_norm_(mha|ffn)\.0\./.test(n);

beforeAll(async () => {
  await initBackend({ backend: 'wasm', quiet: true, gradients: true });
});

describe('hard-concrete gates (TinyCLIP l0module)', () => {
  test('keep probability: ≈ 1 at ln α = 10, small at ln 0.01, equals σ(ln α + (2/3)·ln 11); its gradient is p(1 − p)', () => {
    const gate = new HardConcreteGate(3);
    expect(num(tf.tidy(() => gate.keepProbability().min()))).toBeGreaterThan(0.99998);
    gate.logAlpha.assign(tf.tensor1d([HC_LOG_ALPHA_MIN, 0, 2.5]));
    const p = Array.from(tf.tidy(() => gate.keepProbability()).dataSync());
    const want = [-4.60517, 0, 2.5].map((a) => sigmoid(a + (2 / 3) * Math.log(11)));
    p.forEach((v, i) => expect(Math.abs(v - want[i])).toBeLessThan(1e-6));
    expect(p[0]).toBeGreaterThan(0.045);
    expect(p[0]).toBeLessThan(0.05); // σ(−4.605 + 1.599) = 0.0471
    expect(Math.abs(p[1] - 0.831822)).toBeLessThan(1e-5);
    expect(Math.abs(keepProbabilityOf(Math.log(0.01)) - 0.0471298)).toBeLessThan(1e-6);
    expect(Math.abs(num(tf.tidy(() => gate.expectedOpen())) - want.reduce((a, b) => a + b))).toBeLessThan(1e-5);
    const g = tf.tidy(() => tf.grad((x: tf.Tensor) => keepProbability(x).sum())(gate.logAlpha));
    Array.from(g.dataSync()).forEach((v, i) => expect(Math.abs(v - want[i] * (1 - want[i]))).toBeLessThan(1e-6));
    g.dispose();
    gate.dispose();
  });

  test('sample from given uniforms: the formula, clamped to [0, 1], differentiable inside (0, 1) and flat where clamped', () => {
    const la = [0, 2, -3, 0, -1];
    const u = [0.5, 0.5, 0.5, 0.9, 0.7];
    // z = clamp(1.2·σ((ln u − ln(1 − u) + ln α)·1.5) − 0.1, 0, 1)
    const want = [0.5, 1, 0, 1, 1.2 * sigmoid((Math.log(0.7 / 0.3) - 1) * 1.5) - 0.1];
    expect(Math.abs(want[4] - 0.43159)).toBeLessThan(1e-4);
    const [z, g] = tf.tidy(() => {
      const x = tf.tensor1d(la);
      const ut = tf.tensor1d(u);
      return [hardConcreteFromUniform(x, ut), tf.grad((y: tf.Tensor) => hardConcreteFromUniform(y, ut).sum())(x)];
    });
    Array.from(z.dataSync()).forEach((v, i) => expect(Math.abs(v - want[i]), `z[${i}]`).toBeLessThan(1e-6));
    const s4 = sigmoid((Math.log(0.7 / 0.3) - 1) * 1.5);
    const wantGrad = [1.2 * 0.25 * 1.5, 0, 0, 0, 1.2 * s4 * (1 - s4) * 1.5];
    Array.from(g.dataSync()).forEach((v, i) => expect(Math.abs(v - wantGrad[i]), `dz/dlnα[${i}]`).toBeLessThan(1e-5));
    tf.dispose([z, g]);
  });

  test('sampling: z ∈ [0, 1] with point masses at 0 and 1, reproducible from a seed, P(z ≠ 0) matches keepProbability', () => {
    const las = [-2, 0, 1.5];
    const n = 20000;
    const gate = new HardConcreteGate([3, n], { seed: 7 });
    gate.logAlpha.assign(tf.tidy(() => tf.tensor1d(las).reshape([3, 1]).tile([1, n])));
    const z1 = gate.sample(123);
    const z2 = gate.sample(123);
    const z3 = gate.sample(124);
    const a = z1.dataSync();
    expect(Array.from(z2.dataSync())).toEqual(Array.from(a));
    expect(Array.from(z3.dataSync())).not.toEqual(Array.from(a));
    let min = Infinity;
    let max = -Infinity;
    for (const v of a) {
      min = Math.min(min, v);
      max = Math.max(max, v);
    }
    expect(min).toBe(0);
    expect(max).toBe(1);
    las.forEach((la, r) => {
      const row = a.subarray(r * n, (r + 1) * n);
      let nonZero = 0;
      let ones = 0;
      let inside = 0;
      for (const v of row) {
        if (v !== 0) nonZero++;
        if (v === 1) ones++;
        if (v > 0 && v < 1) inside++;
      }
      // σ of the binomial frequency ≤ 0.0036 at n = 20000.
      expect(Math.abs(nonZero / n - keepProbabilityOf(la)), `ln α ${la}`).toBeLessThan(0.015);
      expect(ones).toBeGreaterThan(0);
      expect(inside).toBeGreaterThan(0);
    });
    // Without a seed: drawn from the gate's own generator, so two gates built alike sample alike.
    const other = new HardConcreteGate([3, n], { seed: 7 });
    other.logAlpha.assign(gate.logAlpha);
    const [s1, s2] = [gate.sample(), other.sample()];
    expect(Array.from(s1.dataSync())).toEqual(Array.from(s2.dataSync()));
    tf.dispose([z1, z2, z3, s1, s2]);
    gate.dispose();
    other.dispose();
  });

  test('clampLogAlpha clamps to [ln 0.01, ln 100] in place', () => {
    const gate = new HardConcreteGate(4);
    gate.logAlpha.assign(tf.tensor1d([10, -10, 0.3, -4]));
    gate.clampLogAlpha();
    const got = Array.from(gate.logAlpha.dataSync());
    [4.60517, -4.60517, 0.3, -4].forEach((v, i) => expect(Math.abs(got[i] - v)).toBeLessThan(1e-5));
    expect(HC_LOG_ALPHA_MAX).toBeCloseTo(Math.log(100), 12);
    gate.dispose();
  });

  test('deterministic mask: hand-computed zero counts and fractional soft values, per row of the last axis', () => {
    // ln α = [−1, 4, −4.6, 0, 2, −3]: P(z ≠ 0) = σ(ln α + 1.5986) = [0.6453, 0.9963, 0.0474, 0.8318, 0.9734, 0.1976],
    // Σ = 3.6918, n_zero = round(6 − 3.6918) = 2 → the two smallest soft values (ln α −4.6 and −3) become 0;
    // the others keep soft = σ(0.8·ln α/β) = σ(1.2·ln α).
    const gate = new HardConcreteGate(6);
    gate.logAlpha.assign(tf.tensor1d([-1, 4, -4.6, 0, 2, -3]));
    const want = [0.2314752, 0.9918374, 0, 0.5, 0.9168273, 0];
    const got = gate.deterministic();
    expect(got).toBeInstanceOf(Float32Array);
    Array.from(got).forEach((v, i) => expect(Math.abs(v - want[i]), `entry ${i}`).toBeLessThan(1e-6));
    gate.dispose();
    // [2, 4]: row 0 Σ P = 2.5513 → 1 zero (ln α −2.5); row 1 [−2, −2, 3, 3]: Σ P = 2 × 0.4013 + 2 × 0.9918 = 2.786 → 1 zero,
    // a tie between the two −2 entries: the lower index goes.
    const rows = new HardConcreteGate([2, 4]);
    rows.logAlpha.assign(tf.tensor2d([
      [1, 1, -2, -2.5],
      [-2, -2, 3, 3],
    ]));
    const r = Array.from(rows.deterministic());
    const wantRows = [0.7685248, 0.7685248, 0.0831727, 0, 0, 0.0831727, 0.973403, 0.973403];
    r.forEach((v, i) => expect(Math.abs(v - wantRows[i]), `entry ${i}`).toBeLessThan(1e-6));
    // The same values as one group of 8: Σ P = 5.337 → round(2.663) = 3 zeros.
    expect(Array.from(deterministicMask(rows.logAlpha.dataSync())).filter((v) => v === 0).length).toBe(3);
    expect(() => deterministicMask([1, 2, 3], 2)).toThrow(MclipError);
    rows.dispose();
    // Open gates (ln α = 10): nothing is zeroed, soft ≈ 1.
    const open = new HardConcreteGate(5);
    expect(Array.from(open.deterministic()).every((v) => v > 0.99999)).toBe(true);
    open.dispose();
  });
});

describe('expected size', () => {
  const ch8 = () => tf.tensor1d([1, 1, 1, 1, 0.5, 0.5, 0, 0]); // S_c = 5

  test('transformer layer (d 8, 2 heads × 3 ≠ d, FFN 12): hand numbers, gradients, N₀ = the real TransformerEncoder count', () => {
    const g = { dim: 8, heads: 2, headDim: 3, ffn: 12 };
    const [e, full, eNorm, fullNorm, grads] = tf.tidy(() => {
      const channels = ch8();
      const heads = tf.tensor1d([0.5, 1]); // S_h = 1.5
      const ffn = tf.tensor1d([1, 1, 1, 1, 1, 1, 0.25, 0.25, 0.25, 0.25, 0, 0]); // S_f = 7
      const t = transformerLayerSize({ channels, heads, ffn }, g);
      const tn = transformerLayerSize({ channels, heads, ffn }, { ...g, norms: true });
      const gr = tf.grads((c: tf.Tensor, h: tf.Tensor, f: tf.Tensor) => transformerLayerSize({ channels: c, heads: h, ffn: f }, g).expected)([channels, heads, ffn]);
      return [t.expected, tf.scalar(t.full), tn.expected, tf.scalar(tn.full), gr.map((x) => Array.from(x.dataSync()))] as const;
    });
    // qkv W 3·d_h·S_c·S_h = 9·5·1.5 = 67.5; qkv b 3·d_h·S_h = 13.5; out W d_h·S_c·S_h = 22.5; out b S_c = 5;
    // fc1 W S_c·S_f = 35; fc1 b S_f = 7; fc2 W 35; fc2 b S_c = 5 → 190.5; LayerNorms 4·S_c = 20 more.
    expect(num(e)).toBeCloseTo(190.5, 4);
    expect(num(eNorm)).toBeCloseTo(210.5, 4);
    // N₀: qkv 8·18 + 18, out 6·8 + 8, fc1 8·12 + 12, fc2 12·8 + 8 = 162 + 56 + 108 + 104 = 430; + LNs 32.
    expect(num(full)).toBe(430);
    expect(num(fullNorm)).toBe(462);
    // ∂E/∂p_c = 4·d_h·S_h + 2 + 2·S_f = 34; ∂E/∂p_h = 4·d_h·S_c + 3·d_h = 69; ∂E/∂p_f = 2·S_c + 1 = 11.
    expect(grads[0].every((v) => Math.abs(v - 34) < 1e-4)).toBe(true);
    expect(grads[1].every((v) => Math.abs(v - 69) < 1e-4)).toBe(true);
    expect(grads[2].every((v) => Math.abs(v - 11) < 1e-4)).toBe(true);
    tf.dispose([e, full, eNorm, fullNorm]);

    const layer = new TransformerEncoder(8, 2, 12, new Initializer(1), { headDim: 3 });
    const geo = transformerLayerGeometry(layer);
    expect(geo).toEqual({ ...g, norms: false });
    expect(read(transformerLayerSize({}, geo))).toEqual([430, 430]);
    expect(counted(layer, notLayerNorm)).toBe(430);
    expect(read(transformerLayerSize({}, transformerLayerGeometry(layer, true)))).toEqual([462, 462]);
    expect(layer.numParams()).toBe(462);
    layer.dispose();
    // d_h = d/H: N₀ is TinyCLIP's 4d² + 4d + 2dF + d + F (d 8, F 32: 840).
    const std = new TransformerEncoder(8, 2, 32);
    expect(read(transformerLayerSize({}, transformerLayerGeometry(std)))).toEqual([840, 4 * 64 + 4 * 8 + 2 * 8 * 32 + 8 + 32]);
    expect(counted(std, notLayerNorm)).toBe(840);
    std.dispose();
    expect(() => tf.tidy(() => transformerLayerSize({ heads: tf.ones([3]) }, g).expected)).toThrow(MclipError);
  });

  test('MCi RepMixerBlock (train-time and fused mixer), text RepMixerBlock, ConvFFN: hand numbers and the real classes', () => {
    const c4 = () => tf.tensor1d([1, 0.5, 0.5, 0]); // S_c = 2
    const f12 = () => tf.tensor1d([1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0, 0, 0, 0]); // S_f = 6
    const sizes = (fused: boolean) =>
      tf.tidy(() => {
        const t = repMixerBlockSize({ channels: c4(), ffn: f12() }, { dim: 4, ffn: 12, kernel: [3, 3], ffnKernel: [7, 7], fused });
        return [num(t.expected), t.full];
      });
    // Per channel (train form): block γ 1; mixer: γ 1, norm BN 2, skip BN 2, 3×3 conv 9 + BN 2, 1×1 scale 1 + BN 2 (= 19);
    // ConvFFN: 7×7 dw 49 + BN 2, fc2 bias 1 → 72. Pairs: fc1 + fc2 2·S_c·S_f = 24; fc1 bias S_f = 6.
    // E = 72·2 + 24 + 6 = 174; N₀ = 72·4 + 2·4·12 + 12 = 396.
    expect(sizes(false)[0]).toBeCloseTo(174, 4);
    expect(sizes(false)[1]).toBe(396);
    // Fused mixer: 3×3 + bias = 10 per channel instead of 19 → 63 per channel: E = 126 + 30 = 156; N₀ = 252 + 108 = 360.
    expect(sizes(true)[0]).toBeCloseTo(156, 4);
    expect(sizes(true)[1]).toBe(360);
    const ffn = tf.tidy(() => {
      const t = convFfnSize({ channels: c4(), ffn: f12() }, { dim: 4, ffn: 12, kernel: [7, 7] });
      return [num(t.expected), t.full];
    });
    expect(ffn[0]).toBeCloseTo(52 * 2 + 24 + 6, 4); // 134
    expect(ffn[1]).toBe(52 * 4 + 96 + 12); // 316

    const image = new RepMixerBlock(4, { kernel: [3, 3], ffnKernel: [7, 7], mlpRatio: 3 });
    const imageFused = new RepMixerBlock(4, { kernel: [3, 3], ffnKernel: [7, 7], mlpRatio: 3, inferenceMode: true });
    const text = new RepMixerBlock(4, { kernel: [1, 11], ffnKernel: [1, 11], mlpRatio: 4 });
    const convFfn = new ConvFFN(4, 12, 4, [7, 7]);
    expect(repMixerBlockGeometry(image)).toEqual({ dim: 4, ffn: 12, kernel: [3, 3], ffnKernel: [7, 7], fused: false });
    expect(repMixerBlockGeometry(imageFused).fused).toBe(true);
    expect(read(repMixerBlockSize({}, repMixerBlockGeometry(image)))).toEqual([396, 396]);
    expect(image.numParams()).toBe(396);
    expect(read(repMixerBlockSize({}, repMixerBlockGeometry(imageFused)))).toEqual([360, 360]);
    expect(imageFused.numParams()).toBe(360);
    // Text (1×11, no scale branch): mixer 1 + 2 + 2 + 11 + 2 = 18, ConvFFN 11 + 2 + 1, block γ 1 → 33 per channel;
    // N₀ = 33·4 + 2·4·16 + 16 = 276.
    expect(read(repMixerBlockSize({}, repMixerBlockGeometry(text)))).toEqual([276, 276]);
    expect(text.numParams()).toBe(276);
    text.reparameterize(); // no-op on the block; the mixer must be fused on its own
    text.tokenMixer.reparameterize();
    expect(read(repMixerBlockSize({}, repMixerBlockGeometry(text)))).toEqual([252, 252]); // 27 per channel
    expect(text.numParams()).toBe(252);
    expect(convFfn.numParams()).toBe(316);
    [image, imageFused, text, convFfn].forEach((m) => m.dispose());
  });

  test('MCi AttentionBlock (8 channels, 3 heads × 4 ≠ 8, ConvFFN 24): hand numbers and the real class', () => {
    const g = { dim: 8, heads: 3, headDim: 4, ffn: 24 };
    const [e, full] = tf.tidy(() => {
      const ffn = tf.concat([tf.ones([12]), tf.zeros([12])]); // S_f = 12
      const t = attentionBlockSize({ channels: ch8(), heads: tf.tensor1d([1, 0.5, 0]), ffn }, g); // S_h = 1.5
      return [num(t.expected), t.full];
    });
    // qkv (no bias) + proj W: 4·d_h·S_c·S_h = 16·7.5 = 120; per channel BN 2, γ₁ γ₂ 2, proj b 1, ConvFFN 49 + 2 + 1
    // = 57·5 = 285; ConvFFN pairs 2·5·12 = 120; fc1 b 12 → 537. N₀ = 16·8·3 + 57·8 + 2·8·24 + 24 = 1248.
    expect(e).toBeCloseTo(537, 3);
    expect(full).toBe(1248);
    const block = new AttentionBlock(8, { headDim: 4, heads: 3, hidden: 24 });
    expect(attentionBlockGeometry(block)).toEqual({ ...g, ffnKernel: [7, 7] });
    expect(read(attentionBlockSize({}, attentionBlockGeometry(block)))).toEqual([1248, 1248]);
    expect(block.numParams()).toBe(1248);
    block.dispose();
  });

  test('a whole tower (mct-like: RepMixer, 2 transformer layers, RepMixer, token table) and the joint sparsity of two towers', () => {
    const [eTower, fullTower, sTower, sJoint] = tf.tidy(() => {
      const channels = ch8(); // one hidden mask shared by every block and the table
      const text = { dim: 8, ffn: 32, kernel: [1, 11] as const, ffnKernel: [1, 11] as const };
      const tl = { dim: 8, heads: 2, headDim: 4, ffn: 32 };
      const tower = sumSizes([
        repMixerBlockSize({ channels }, text),
        transformerLayerSize({ channels, heads: tf.tensor1d([1, 0]) }, tl),
        transformerLayerSize({ channels, heads: tf.tensor1d([0.5, 0.5]) }, tl),
        repMixerBlockSize({ channels }, text),
        tableSize({ channels }, { dim: 8, rows: 10 }),
      ]);
      const image = attentionBlockSize({ channels: ch8(), heads: tf.tensor1d([1, 0.5, 0]), ffn: tf.concat([tf.ones([12]), tf.zeros([12])]) }, { dim: 8, heads: 3, headDim: 4, ffn: 24 });
      return [num(tower.expected), tower.full, num(expectedSparsity(tower)), num(expectedSparsity([tower, image]))];
    });
    // RepMixer (text, 33 per channel): 33·5 + 2·5·32 + 32 = 517 of 808; each layer (S_h = 1): 16·5 + 12 + 10 + 320 + 32 = 454
    // of 840; table 10·5 = 50 of 80 → E = 2·517 + 2·454 + 50 = 1992, N₀ = 2·808 + 2·840 + 80 = 3376.
    expect(eTower).toBeCloseTo(1992, 3);
    expect(fullTower).toBe(3376);
    expect(sTower).toBeCloseTo(1 - 1992 / 3376, 5); // 0.40995
    // Joint with the attention block above (537 of 1248): 1 − 2529 / 4624.
    expect(sJoint).toBeCloseTo(1 - 2529 / 4624, 5);
    // N₀ is the counted parameters of the real modules.
    const mods = [
      new RepMixerBlock(8, { kernel: [1, 11], ffnKernel: [1, 11], mlpRatio: 4 }),
      new TransformerEncoder(8, 2, 32),
      new TransformerEncoder(8, 2, 32),
      new RepMixerBlock(8, { kernel: [1, 11], ffnKernel: [1, 11], mlpRatio: 4 }),
    ];
    expect(mods.reduce((s, m) => s + counted(m, m instanceof TransformerEncoder ? notLayerNorm : undefined), 0) + 10 * 8).toBe(3376);
    mods.forEach((m) => m.dispose());
    // A fixed part counts in N₀ only: with all masks open ŝ = 0; an empty sum is 0 of 0.
    expect(tf.tidy(() => num(expectedSparsity([fixedSize(100), tableSize({}, { dim: 4, rows: 3 })])))).toBeCloseTo(0, 6);
    expect(read(sumSizes([]))).toEqual([0, 0]);
    expect(() => expectedSparsity(sumSizes([]))).toThrow(MclipError);
  });
});

interface ToyOptions {
  form: LagrangianForm;
  /** Initial ln α of every gate. */
  init: number;
  steps: number;
  target: number;
  /** Weight of the task loss (0: none). */
  task?: number;
  /** Without the Lagrangian (the task alone). */
  noLagrangian?: boolean;
  /** Mask learning stops here (lr 0). */
  pruneStep?: number;
}

const TOY = { dim: 8, heads: 4, headDim: 2, ffn: 16 };

/**
 * Toy mask learning: head [4] and FFN [16] gates of one transformer layer (d 8, d_h 2, N₀ 568), ŝ its expected
 * sparsity, L = L_lag(ŝ, t) + task·mean_f w_f (1 − p_f) — a task loss that wants every FFN unit open, unit f
 * with importance w_f rising from 0.1 to 1.6. Optimised by our AdamW with the two mask groups (lr 0.1).
 */
function runToy(o: ToyOptions): { s: number[]; lambdas: number[]; ffn: Float32Array; logAlpha: number[][]; lambdaTrace: number[][] } {
  const heads = new HardConcreteGate(4, { initLogAlpha: o.init });
  const ffn = new HardConcreteGate(16, { initLogAlpha: o.init });
  const lag = new SparsityLagrangian({ start: o.target, end: o.target, warmup: 0, form: o.form });
  const opt = new AdamW(new ParamHolder(), { lr: 0, groups: maskParamGroups([heads.logAlpha, ffn.logAlpha], lag, { maskLr: 0.1, lambdaLr: 0.1 }) });
  const importance = tf.linspace(0.1, 1.6, 16);
  const sparsity = () => expectedSparsity(transformerLayerSize({ heads: heads.keepProbability(), ffn: ffn.keepProbability() }, TOY));
  const s: number[] = [];
  const logAlpha: number[][] = [];
  const lambdaTrace: number[][] = [];
  for (let step = 0; step < o.steps; step++) {
    if (o.pruneStep !== undefined) stopMaskLearningAt(opt, step, o.pruneStep);
    const { value, grads } = tf.variableGrads(
      () =>
        tf.tidy(() => {
          const lagLoss = o.noLagrangian ? tf.scalar(0) : lag.loss(sparsity(), step);
          const task = o.task ? tf.sub(1, ffn.keepProbability()).mul(importance).mean().mul(o.task) : tf.scalar(0);
          return lagLoss.add(task) as tf.Scalar;
        }),
      opt.variables,
    );
    opt.apply(grads);
    tf.dispose([value, ...Object.values(grads)]);
    heads.clampLogAlpha();
    ffn.clampLogAlpha();
    s.push(tf.tidy(() => num(sparsity())));
    logAlpha.push([...heads.logAlpha.dataSync(), ...ffn.logAlpha.dataSync()]);
    lambdaTrace.push([num(lag.lambda1), num(lag.lambda2)]);
  }
  const out = { s, lambdas: [num(lag.lambda1), num(lag.lambda2)], ffn: ffn.deterministic(), logAlpha, lambdaTrace };
  opt.dispose();
  [heads, ffn, lag, importance].forEach((x) => x.dispose());
  return out;
}

describe('sparsity Lagrangian', () => {
  test('target ramp, both forms by hand, parameter groups', () => {
    const t = { start: 0.25, end: 0.5, warmup: 1000 };
    expect(targetSparsity(0, t)).toBe(0.25);
    expect(targetSparsity(500, t)).toBeCloseTo(0.375, 12);
    expect(targetSparsity(1000, t)).toBe(0.5);
    expect(targetSparsity(5000, t)).toBe(0.5);
    expect(targetSparsity(10, { start: 0, end: 0.75 })).toBeCloseTo(0.0075, 12); // default warmup 1000
    expect(targetSparsity(0, { start: 0, end: 0.75, warmup: 0 })).toBe(0.75);
    const at = (s: number, form: LagrangianForm) => tf.tidy(() => num(lagrangianLoss(tf.scalar(s), 0.5, tf.scalar(10), tf.scalar(10), form)));
    expect(at(0.3, 'two-sided')).toBeCloseTo(10 * -0.2 + 10 * 0.04, 5); // −1.6
    expect(at(0.3, 'one-sided')).toBeCloseTo(10 * 0.2 + 10 * 0.04, 5); // 2.4
    expect(at(0.7, 'two-sided')).toBeCloseTo(10 * 0.2 + 10 * 0.04, 5);
    expect(at(0.7, 'one-sided')).toBe(0);
    const lag = new SparsityLagrangian({ start: 0, end: 0.5, warmup: 100 });
    expect(lag.form).toBe('one-sided');
    expect([num(lag.lambda1), num(lag.lambda2)]).toEqual([10, 10]);
    expect(tf.tidy(() => num(lag.loss(tf.scalar(0.1), 50)))).toBeCloseTo(10 * 0.15 + 10 * 0.0225, 5);
    const gate = new HardConcreteGate(3);
    const groups = maskParamGroups([gate.logAlpha], lag);
    expect(groups.map((g) => [g.name, g.lr, g.weightDecay, g.ascent ?? false, g.variables.length])).toEqual([
      [MASK_GROUP, 0.02, 0, false, 1],
      [LAMBDA_GROUP, 0.02, 0, true, 2],
    ]);
    expect(() => new SparsityLagrangian({ start: 0, end: 1 })).toThrow(MclipError);
    gate.dispose();
    lag.dispose();
  });

  test('two-sided form: ŝ reaches the target from below and from above', () => {
    const below = runToy({ form: 'two-sided', init: 10, steps: 300, target: 0.5 });
    const above = runToy({ form: 'two-sided', init: -4, steps: 300, target: 0.5 });
    expect(below.s[0]).toBeLessThan(0.1);
    expect(above.s[0]).toBeGreaterThan(0.8);
    expect(Math.abs(below.s.at(-1)! - 0.5)).toBeLessThan(0.03);
    expect(Math.abs(above.s.at(-1)! - 0.5)).toBeLessThan(0.03);
    // λ₂ only grows ((ŝ − t)² ≥ 0 is its gradient, ascended).
    expect(below.lambdas[1]).toBeGreaterThan(10);
    expect(above.lambdas[1]).toBeGreaterThan(10);
  });

  test('one-sided form: pushes up from below; leaves masks and multipliers alone when sparser than the target', () => {
    const below = runToy({ form: 'one-sided', init: 10, steps: 150, target: 0.5 });
    expect(below.s[0]).toBeLessThan(0.1);
    expect(Math.max(...below.s)).toBeGreaterThan(0.49);
    expect(below.lambdas[0]).toBeGreaterThan(10);
    const above = runToy({ form: 'one-sided', init: -4, steps: 20, target: 0.5 });
    expect(above.s[0]).toBeGreaterThan(0.8);
    expect(above.s.every((v) => v === above.s[0])).toBe(true);
    expect(above.logAlpha.at(-1)!.every((v) => Math.abs(v - -4) < 1e-6)).toBe(true);
    expect(above.lambdas).toEqual([10, 10]);
  });

  test('a task loss that wants masks open competes: alone it keeps them open, with the Lagrangian ŝ meets the target and the least important units close', () => {
    const alone = runToy({ form: 'one-sided', init: 10, steps: 100, target: 0.5, task: 1, noLagrangian: true });
    expect(alone.s.at(-1)!).toBeLessThan(0.01);
    const one = runToy({ form: 'one-sided', init: 10, steps: 300, target: 0.5, task: 1 });
    expect(Math.abs(one.s.at(-1)! - 0.5)).toBeLessThan(0.03);
    // The one-sided penalty alone overshoots (nothing pulls back once ŝ ≥ t); the task pulls ŝ back to t.
    expect(Math.max(...one.s)).toBeGreaterThan(0.6);
    // Deterministic FFN mask: the zeroed units are the least important ones, the kept soft values rise with importance.
    const zeros = Array.from(one.ffn).filter((v) => v === 0).length;
    expect(zeros).toBeGreaterThan(0);
    expect(zeros).toBeLessThan(16);
    for (let i = 1; i < 16; i++) expect(one.ffn[i], `unit ${i}`).toBeGreaterThanOrEqual(one.ffn[i - 1]);
    const two = runToy({ form: 'two-sided', init: 10, steps: 300, target: 0.5, task: 1 });
    expect(Math.abs(two.s.at(-1)! - 0.5)).toBeLessThan(0.03);
  });

  test('stopMaskLearningAt: from the prune step on neither the masks nor the multipliers move', () => {
    const r = runToy({ form: 'one-sided', init: 10, steps: 40, target: 0.5, task: 1, pruneStep: 25 });
    expect(r.s[23]).not.toBe(r.s[24]);
    expect(r.lambdaTrace[23]).not.toEqual(r.lambdaTrace[24]);
    for (let i = 25; i < 40; i++) {
      expect(r.logAlpha[i]).toEqual(r.logAlpha[24]);
      expect(r.lambdaTrace[i]).toEqual(r.lambdaTrace[24]);
    }
  });

  test("loss term 'sparsity' inside lossAndGrads: L_lag at the step's target, gradients for ln α and λ, no leaks", () => {
    const cfg = microConfig();
    const model = new CLIP(cfg, { seed: 3 }).train();
    const batch = syntheticBatch(cfg, 0, { batch: 2, context: MICRO_CONTEXT, seed: 11, teacherWidth: TEST_TEACHER_WIDTH });
    const gate = new HardConcreteGate(16, { initLogAlpha: -1 });
    const lag = new SparsityLagrangian({ start: 0, end: 0.8, warmup: 1000 });
    const probs = (): KeepProbs => ({ ffn: gate.keepProbability() });
    const term = sparsityTerm(lag, () => expectedSparsity(transformerLayerSize(probs(), TOY)));
    expect(term.name).toBe('sparsity');
    const before = tf.memory().numTensors;
    const got = lossAndGrads(model, batch, { losses: [term], variables: [gate.logAlpha, ...lag.variables], step: 500 });
    const s = tf.tidy(() => num(expectedSparsity(transformerLayerSize(probs(), TOY))));
    const t = 0.4; // 0 + 0.8·500/1000
    const want = 10 * Math.max(t - s, 0) + 10 * Math.max(t - s, 0) ** 2;
    expect(s).toBeLessThan(t);
    expect(num(got.losses.sparsity)).toBeCloseTo(want, 4);
    expect(Object.keys(got.grads).sort()).toEqual([gate.logAlpha.name, lag.lambda1.name, lag.lambda2.name].sort());
    expect(num(got.grads[lag.lambda1.name])).toBeCloseTo(t - s, 5);
    expect(num(got.grads[lag.lambda2.name])).toBeCloseTo((t - s) ** 2, 5);
    // Closing FFN units raises ŝ, which lowers the one-sided penalty: every ln α gradient is positive.
    expect(Array.from(got.grads[gate.logAlpha.name].dataSync()).every((v) => v > 0)).toBe(true);
    tf.dispose([got.loss, ...Object.values(got.losses), ...Object.values(got.grads)]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([batch.images, batch.gtTokens, batch.synTokens!]);
    [gate, lag, model].forEach((x) => x.dispose());
  });

  test('no tensor leaks from gates, sizes, the Lagrangian and a full optimiser step', () => {
    const before = tf.memory().numTensors;
    const heads = new HardConcreteGate([2, 3]);
    const lag = new SparsityLagrangian({ start: 0, end: 0.5, form: 'two-sided' });
    const opt = new AdamW(new ParamHolder(), { lr: 0, groups: maskParamGroups([heads.logAlpha], lag) });
    tf.dispose([heads.sample(1), heads.sample(), heads.keepProbability(), heads.expectedOpen()]);
    heads.deterministic();
    heads.clampLogAlpha();
    for (let step = 0; step < 3; step++) {
      const { value, grads } = tf.variableGrads(() => {
        const probs = heads.keepProbability().reshape([2, 3]).unstack();
        const layers = probs.map((p) => transformerLayerSize({ heads: p }, { dim: 6, heads: 3, headDim: 2, ffn: 4 }));
        return lag.loss(expectedSparsity([...layers, repMixerBlockSize({}, { dim: 6, ffn: 4, kernel: [3, 3], ffnKernel: [7, 7] })]), step);
      }, opt.variables);
      opt.apply(grads);
      tf.dispose([value, ...Object.values(grads)]);
      stopMaskLearningAt(opt, step, 2);
    }
    const channels = tf.ones([4]);
    read(attentionBlockSize({ channels }, { dim: 4, heads: 1, headDim: 4, ffn: 4 }));
    expect(tf.tidy(() => num(sumSizes([tableSize({ channels }, { dim: 4, rows: 2 }), fixedSize(3)]).expected))).toBe(11);
    channels.dispose();
    opt.dispose();
    heads.dispose();
    lag.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
