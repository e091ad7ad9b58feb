import { beforeAll, describe, expect, test } from 'vitest';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { toFloat32, type StateDict } from '../../src/base/io/tensor-data.js';
import { loadTorchCheckpoint } from '../../src/base/io/torch-checkpoint.js';
import { CLIP } from '../../src/base/model/clip.js';
import { getConfig, mciStages, textLayers, type ClipConfig } from '../../src/base/model/configs.js';
import { exportStateDict, loadStateDict } from '../../src/base/model/state-dict.js';
import { reparameterize } from '../../src/base/model/reparameterize.js';
import { countParams } from '../../src/eval/cost.js';
import { inheritWeights, planInheritance, stateDictParams, strideIndices, type InheritSpec } from '../../src/distill/inherit.js';
import { MclipError } from '../../src/errors.js';
import { microConfig, MICRO_CONTEXT, MICRO_VOCAB } from '../micro-config.js';
import { describeFixtures, fixture } from '../paths.js';

/** A micro teacher with 2 text encoders, 2 and 4 blocks in stages 2 and 3, and non-trivial BN statistics. */
function teacherConfig(): ClipConfig {
  const cfg = microConfig();
  cfg.text.nTransformerLayers = 2;
  if (cfg.image.kind === 'mci') cfg.image.layers = [1, 2, 4, 1];
  return cfg;
}

function randomTeacher(cfg: ClipConfig, fused = false): { model: CLIP; sd: StateDict } {
  const model = new CLIP(cfg, { seed: 4 }).eval();
  let s = 7;
  const rnd = () => ((s = (s * 16807) % 2147483647) / 2147483647);
  for (const [n, p] of model.namedParams()) {
    if (/running_var/.test(n)) p.variable.assign(tf.tensor(Float32Array.from({ length: p.variable.size }, () => 0.5 + rnd()), p.variable.shape));
    if (/running_mean|layer_scale/.test(n)) p.variable.assign(tf.tensor(Float32Array.from({ length: p.variable.size }, () => rnd() - 0.5), p.variable.shape));
  }
  if (fused) reparameterize(model);
  return { model, sd: exportStateDict(model) };
}

function tokens(): tf.Tensor2D {
  const row = (a: number[]) => [MICRO_VOCAB - 2, ...a, MICRO_VOCAB - 1, ...new Array(MICRO_CONTEXT - 2 - a.length).fill(0)];
  return tf.tensor2d([row([5, 6, 7]), row([9])], [2, MICRO_CONTEXT], 'int32');
}

beforeAll(async () => {
  await initBackend({ backend: 'wasm', quiet: true, gradients: false });
});

describe('manual weight inheritance (micro models)', () => {
  test('strideIndices: step ⌊L_t/L_s⌋ from 0 (methods.md §3.2)', () => {
    expect(strideIndices(12, 6)).toEqual([0, 2, 4, 6, 8, 10]);
    expect(strideIndices(12, 9)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    expect(strideIndices(10, 3)).toEqual([0, 3, 6]);
    expect(strideIndices(4, 4)).toEqual([0, 1, 2, 3]);
  });

  for (const fused of [false, true]) {
    test(`no-op (the teacher's own sizes) gives the identical state dict and outputs (${fused ? 'fused' : 'unfused'})`, () => {
      const cfg = teacherConfig();
      const { model, sd } = randomTeacher(cfg, fused);
      const own: InheritSpec = { textLayers: 2, textWidth: 64, textHeads: 2, textFfn: 256, imageDepths: [1, 2, 4, 1], imageWidths: [8, 16, 32, 64], imageFfnRatio: 3 };
      for (const spec of [{}, own]) {
        const r = inheritWeights(sd, spec, { teacherConfig: cfg });
        expect(r.fused).toBe(fused);
        expect(r.config).toEqual(cfg);
        expect([...r.stateDict.keys()]).toEqual([...sd.keys()]);
        for (const [k, t] of sd) {
          expect(r.stateDict.get(k)!.shape, k).toEqual(t.shape);
          expect(r.stateDict.get(k)!.data, k).toEqual(t.data);
        }
      }
      const r = inheritWeights(sd, own, { teacherConfig: cfg });
      const student = new CLIP(r.config, { inferenceMode: fused });
      loadStateDict(student, r.stateDict, 'student');
      student.eval();
      const x = tf.randomUniform([2, 32, 32, 3], 0, 1, 'float32', 2);
      const tok = tokens();
      const d = tf.tidy(() => [
        model.encodeImage(x).sub(student.encodeImage(x)).abs().max().dataSync()[0],
        model.encodeText(tok).sub(student.encodeText(tok)).abs().max().dataSync()[0],
      ]);
      expect(d).toEqual([0, 0]);
      tf.dispose([x, tok]);
      student.dispose();
      model.dispose();
    });
  }

  test('layers at stride, RepMixer blocks kept; qkv sliced per q/k/v block in whole heads; multiplier-2 convs keep 2·C\' outputs', () => {
    const cfg = teacherConfig();
    const { model, sd } = randomTeacher(cfg);
    model.dispose();
    const r = inheritWeights(sd, { textLayers: 1, textWidth: 32, imageDepths: [1, 1, 2, 1], imageWidths: [4, 8, 16, 32] }, { teacherConfig: cfg });
    expect(r.textMap).toEqual([0, 1, 3]); // RepMixer, encoder 1 (of 1, 2), RepMixer
    expect(r.imageMap).toEqual([[0], [0], [0, 2], [0]]);
    expect(textLayers(r.config.text)).toEqual([
      { mixer: 'repmixer', ffnDim: 128 },
      { mixer: 'attention', heads: 1, headDim: 32, ffnDim: 128 },
      { mixer: 'repmixer', ffnDim: 128 },
    ]);
    expect(r.config.image.kind === 'mci' && mciStages(r.config.image)[3]).toMatchObject({ width: 32, heads: 2, headDim: 16, ffnDims: [96] });
    // text qkv: teacher [3·64, 64] (2 heads of 32) → student [3·32, 32]: rows 0–31 of each of q, k, v; columns 0–31.
    const tq = sd.get('text_encoder.transformer.1.pre_norm_mha.1.qkv_proj.weight')!;
    const sq = r.stateDict.get('text_encoder.transformer.1.pre_norm_mha.1.qkv_proj.weight')!;
    expect(sq.shape).toEqual([96, 32]);
    for (const [blk, row, col] of [[0, 0, 0], [1, 5, 31], [2, 31, 7]]) {
      expect(sq.data[(blk * 32 + row) * 32 + col]).toBe(tq.data[(blk * 64 + row) * 64 + col]);
    }
    const tb = sd.get('text_encoder.transformer.1.pre_norm_mha.1.qkv_proj.bias')!;
    const sb = r.stateDict.get('text_encoder.transformer.1.pre_norm_mha.1.qkv_proj.bias')!;
    expect(toFloat32(sb).slice(32, 64)).toEqual(toFloat32(tb).slice(64, 96));
    // Stage 3 block 1 comes from teacher block 2 (step 4 / 2 = 2): network index 4 (stage 3) in both.
    const k = 'image_encoder.model.network.4.1.convffn.fc1.bias';
    expect(toFloat32(r.stateDict.get(k)!)).toEqual(toFloat32(sd.get('image_encoder.model.network.4.2.convffn.fc1.bias')!).slice(0, 48));
    // The last RepMixer block is student layer 2, teacher layer 3.
    const rk = (i: number) => `text_encoder.transformer.${i}.convffn.fc2.bias`;
    expect(toFloat32(r.stateDict.get(rk(2))!)).toEqual(toFloat32(sd.get(rk(3))!).slice(0, 32));
    // PatchEmbed into stage 2: [16, 1, 7, 7] → [8, 1, 7, 7], the first 8 outputs (reading inputs 0..3).
    const pe = 'image_encoder.model.network.1.proj.0.lkb_origin.conv.weight';
    expect(r.stateDict.get(pe)!.shape).toEqual([8, 1, 7, 7]);
    expect(toFloat32(r.stateDict.get(pe)!)).toEqual(toFloat32(sd.get(pe)!).slice(0, 8 * 49));
    expect(r.config.name).toBe(`${cfg.name}_inherited`);
    // The student builds, loads strictly and runs.
    const student = new CLIP(r.config);
    loadStateDict(student, r.stateDict, 'student');
    const y = tf.tidy(() => student.eval().encodeImage(tf.randomUniform([1, 32, 32, 3])));
    expect(y.shape).toEqual([1, 64]);
    y.dispose();
    const c = countParams(student);
    expect(stateDictParams(r.stateDict)).toEqual({ image: c.image, text: c.text, total: c.total });
    student.dispose();
  });

  test('a tower left alone is copied whole: its outputs do not change', () => {
    const cfg = teacherConfig();
    const { model, sd } = randomTeacher(cfg);
    const x = tf.randomUniform([2, 32, 32, 3], 0, 1, 'float32', 3);
    const tok = tokens();
    const cases: [InheritSpec, 'image' | 'text'][] = [
      [{ textLayers: 1, textWidth: 32 }, 'image'],
      [{ imageDepths: [1, 1, 2, 1], imageWidths: [4, 8, 16, 32] }, 'text'],
    ];
    for (const [spec, same] of cases) {
      const r = inheritWeights(sd, spec, { teacherConfig: cfg });
      const student = new CLIP(r.config);
      loadStateDict(student, r.stateDict, 'student');
      student.eval();
      const d = tf.tidy(() => (same === 'image' ? model.encodeImage(x).sub(student.encodeImage(x)) : model.encodeText(tok).sub(student.encodeText(tok))).abs().max().dataSync()[0]);
      expect(d, same).toBe(0);
      student.dispose();
    }
    tf.dispose([x, tok]);
    model.dispose();
  });

  test('ViT teacher: layers at stride, text width sliced as for MCi teachers', () => {
    const cfg = microConfig('mobileclip_tiny_base');
    cfg.image = { kind: 'vit', name: 'vit_micro', imageSize: 32, embedDim: 64, layers: 4, heads: 2, posGrid: 2 };
    const { model, sd } = randomTeacher(cfg);
    model.dispose();
    const r = inheritWeights(sd, { vitLayers: 2, textWidth: 32 }, { teacherConfig: cfg });
    expect(r.imageMap).toEqual([[0, 2]]);
    expect(r.config.image).toMatchObject({ kind: 'vit', layers: 2, heads: 2, embedDim: 64 });
    expect(r.config.text).toMatchObject({ dim: 32, nHeads: 1, causalMasking: true });
    const k = (i: number) => `image_encoder.model.transformer.${i}.pre_norm_ffn.1.weight`;
    expect(toFloat32(r.stateDict.get(k(1))!)).toEqual(toFloat32(sd.get(k(2))!));
    const student = new CLIP(r.config);
    loadStateDict(student, r.stateDict, 'student');
    student.dispose();
  });

  test('sizes the teacher cannot give are one-line errors naming the flag', () => {
    const t = teacherConfig();
    const bad: [InheritSpec, RegExp][] = [
      [{ textWidth: 96 }, /^--text-width 96 is above the teacher's text width 64$/],
      [{ textLayers: 3 }, /^--text-layers 3: the teacher has 2 text transformer layers$/],
      [{ textWidth: 48, textHeads: 5 }, /^--text-heads 5 does not divide the text width 48$/],
      [{ textWidth: 48, textHeads: 3 }, /^--text-heads 3: heads of 48\/3 = 16 channels, but the teacher's are 32 wide \(heads are kept whole\)$/],
      [{ textHeads: 1 }, /^--text-heads 1: heads of 64\/1 = 64 channels/],
      [{ textWidth: 40 }, /^--text-width 40 is not a multiple of the teacher's head width 32/],
      [{ textFfn: 300 }, /^--text-ffn 300 is above the teacher's FFN width 256/],
      [{ imageWidths: [8, 16, 32] }, /^--image-widths has 3 entries; the teacher has 4 MCi stages$/],
      [{ imageDepths: [1, 2, 5, 1] }, /^--image-depths entry 3 \(5\) is above the teacher's 4 \(stage 3\)$/],
      [{ imageWidths: [8, 16, 32, 128] }, /^--image-widths entry 4 \(128\) is above the teacher's 64/],
      [{ imageWidths: [8, 16, 24, 48] }, /^--image-widths entry 3 must be 2 × entry 2 = 32, got 24: the downsampler into stage 3 is a depthwise conv with channel multiplier 2$/],
      [{ imageWidths: [5, 10, 20, 40] }, /^--image-widths entry 4 \(40\) is not a multiple of the teacher's head width 16/],
      [{ imageFfnRatio: 4 }, /^--image-ffn-ratio gives stage 1 block 1 a ConvFFN of 32, above the teacher's 24$/],
      [{ vitLayers: 2 }, /^--vit-layers applies to ViT image towers; the teacher's is MCi/],
      [{ textLayers: 1.5 }, /^--text-layers must be a positive integer, got 1.5$/],
    ];
    for (const [spec, re] of bad) {
      let err: unknown;
      try {
        planInheritance(t, spec);
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(spec)).toBeInstanceOf(MclipError);
      expect((err as Error).message, JSON.stringify(spec)).toMatch(re);
    }
    const vit = getConfig('mobileclip_b');
    expect(() => planInheritance(vit, { imageDepths: [1, 1, 1, 1] })).toThrow(/^--image-depths applies to MCi image towers; the teacher's is a ViT \(use --vit-layers\)$/);
    expect(() => planInheritance(vit, { vitLayers: 13 })).toThrow(/^--vit-layers 13: the teacher has 12 ViT layers$/);
    expect(planInheritance(vit, { vitLayers: 6 }).imageMap).toEqual([[0, 2, 4, 6, 8, 10]]);
  });
});

describeFixtures('manual weight inheritance from the official S0 checkpoint', () => {
  test('unfused .pt teacher: 2 text layers of width 384 (6 heads), MCi widths 48/96/192/384', async () => {
    const sd = await loadTorchCheckpoint(fixture('mobileclip_s0', 'model_fp16.pt'));
    const r = inheritWeights(sd, { textLayers: 2, textWidth: 384, textHeads: 6, imageWidths: [48, 96, 192, 384] }, { source: 'model_fp16.pt' });
    expect(r.teacherConfig.name).toBe('mobileclip_s0');
    expect(r.fused).toBe(false);
    expect(r.textMap).toEqual([0, 1, 3, 5]);
    expect(r.config.text).toMatchObject({ modelName: 'mct', dim: 384, nTransformerLayers: 2, nHeads: 6, ffnMultiplier: 4 });
    expect(r.config.text.layers).toBeUndefined();
    expect(r.config.image).toMatchObject({ kind: 'mci', layers: [2, 6, 10, 2], embedDims: [48, 96, 192, 384], mlpRatio: 3, headDim: 32 });
    expect([...r.stateDict.values()].every((t) => t.dtype === 'float16' || t.dtype === 'int64')).toBe(true);
    // Embedding: first 384 columns of every row.
    const te = sd.get('text_encoder.embedding_layer.weight')!;
    const se = r.stateDict.get('text_encoder.embedding_layer.weight')!;
    expect(se.shape).toEqual([1024, 384]);
    expect(toFloat32(se).slice(384 * 7, 384 * 8)).toEqual(toFloat32(te).slice(512 * 7, 512 * 7 + 384));
  });
});
