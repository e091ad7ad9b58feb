/**
 * `mclip inherit`: TinyCLIP manual weight inheritance from the command line (src/distill/inherit.ts). The S0
 * student loads back with no config and no --arch, and its parameter count matches the formulas below.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { initBackend } from '../../src/base/backend/index.js';
import { readSafetensors, writeSafetensors } from '../../src/base/io/safetensors.js';
import { CLIP } from '../../src/base/model/clip.js';
import { loadModel, saveModel } from '../../src/base/model/checkpoint.js';
import { countParams, modelCost } from '../../src/eval/cost.js';
import { exportOnnx } from '../../src/export/index.js';
import { microConfig } from '../micro-config.js';
import { describeFixtures, fixture } from '../paths.js';
import { expectOneLineError, show, tempDir } from './helpers.js';
import { runMain } from './in-process.js';

/** timm make_divisible(v, 8) as SqueezeExcite uses it (round_limit 0). */
const makeDivisible8 = (v: number) => Math.max(8, Math.floor((v + 4) / 8) * 8);

/**
 * Trainable parameters of an unfused MCi tower (BatchNorm: weight + bias = 2C; running statistics are
 * buffers), MLP ratio 3, RepMixer kernel 3, ConvFFN depthwise 7×7, SE in the downsamplers into stages 3, 4.
 */
function mciParams(c: number[], depths: number[], embed: number): number {
  const stem =
    (27 * c[0] + 2 * c[0] + 3 * c[0] + 2 * c[0]) + // MOB 3→C0 3×3 s2: conv + BN, 1×1 scale conv + BN
    (9 * c[0] + 2 * c[0] + c[0] + 2 * c[0]) + //     MOB depthwise 3×3 s2: conv + BN, scale + BN
    (2 * c[0] + c[0] * c[0] + 2 * c[0]); //          MOB 1×1: BN identity, conv + BN
  const convFfn = (C: number) => 49 * C + 2 * C + (3 * C * C + 3 * C) + (3 * C * C + C); // dw 7×7 + BN, fc1, fc2
  // layer scales (2C), norm BN identity (2C), mixer: BN identity (2C), dw 3×3 + BN (11C), 1×1 scale + BN (3C)
  const repMixer = (C: number) => 2 * C + 2 * C + 2 * C + 11 * C + 3 * C + convFfn(C);
  // layer scales (2C), BN (2C), qkv C→3C (no bias), proj C→C + bias
  const attention = (C: number) => 2 * C + 2 * C + 3 * C * C + (C * C + C) + convFfn(C);
  const se = (C: number, rd: number) => 2 * rd * C + rd + C;
  // 7×7 groups Cin (Cout = 2 Cin) + BN, 3×3 small kernel + BN, [SE], MOB 1×1: BN identity, conv + BN
  const patchEmbed = (Cout: number, withSe: boolean) =>
    49 * Cout + 2 * Cout + 9 * Cout + 2 * Cout + (withSe ? se(Cout, makeDivisible8(Cout / 4)) : 0) + 2 * Cout + Cout * Cout + 2 * Cout;
  const repCpe = (C: number) => 49 * C + C;
  const e = 2 * c[3];
  const convExp = 9 * e + 2 * e + e + 2 * e + se(e, Math.floor(e / 16)); // 3×3 groups C3 + BN, 1×1 scale + BN, SE 1/16
  let n = stem;
  for (let i = 0; i < 4; i++) {
    if (i > 0) n += patchEmbed(c[i], i >= 2);
    if (i === 3) n += repCpe(c[3]);
    n += depths[i] * (i === 3 ? attention(c[i]) : repMixer(c[i]));
  }
  return n + convExp + e * embed;
}

/** Trainable parameters of an unfused `mct` text tower: RepMixer block, `layers` encoders, RepMixer block. */
function mctParams(vocab: number, context: number, d: number, layers: number, ffn: number, embed: number): number {
  const encoder = 2 * d + (3 * d * d + 3 * d) + (d * d + d) + 2 * d + (ffn * d + ffn) + (d * ffn + d); // LN, qkv, out, LN, fc1, fc2
  // layer scales (2d), norm BN identity (2d), mixer BN identity (2d) + dw 1×11 + BN (13d), ConvFFN dw 1×11 + BN (13d), fc1, fc2 (4d)
  const repMixer = 2 * d + 2 * d + 2 * d + 13 * d + 13 * d + (4 * d * d + 4 * d) + (4 * d * d + d);
  return vocab * d + context * d + layers * encoder + 2 * repMixer + 2 * d + d * embed; // + final LN, projection
}

/**
 * MACs per image of a fused MCi tower at `size`² input, as src/eval/cost.ts counts them (convs
 * Ho·Wo·Co·(Ci/groups)·kh·kw, linears tokens·in·out, attention 2·heads·N²·d = 2·N²·C with C/32 heads of 32,
 * the pooled projection; BN, activations, SE pooling and adds are not counted).
 */
function mciMacs(c: number[], depths: number[], embed: number, size: number): number {
  const r = [size / 4, size / 8, size / 16, size / 32];
  const hw = (i: number) => r[i] * r[i];
  let n = (size / 2) ** 2 * c[0] * 3 * 9 + hw(0) * c[0] * 9 + hw(0) * c[0] * c[0]; // stem: 3×3 s2, dw 3×3 s2, 1×1
  const convFfn = (i: number) => hw(i) * c[i] * 49 + 2 * hw(i) * c[i] * 3 * c[i]; // dw 7×7, fc1, fc2
  const se = (C: number, rd: number) => 2 * C * rd; // two 1×1 convs on the pooled 1×1 map
  for (let i = 0; i < 4; i++) {
    if (i > 0) {
      // PatchEmbed: 7×7 s2 groups C_{i−1} → C_i (multiplier 2), [SE], 1×1 C_i → C_i
      n += hw(i) * c[i] * 49 + (i >= 2 ? se(c[i], makeDivisible8(c[i] / 4)) : 0) + hw(i) * c[i] * c[i];
    }
    if (i === 3) n += hw(3) * c[3] * 49; // RepCPE dw 7×7
    const mixer = i === 3 ? hw(3) * c[3] * 3 * c[3] + 2 * hw(3) * hw(3) * c[3] + hw(3) * c[3] * c[3] : hw(i) * c[i] * 9; // qkv, QKᵀ + AV, proj | dw 3×3
    n += depths[i] * (mixer + convFfn(i));
  }
  const e = 2 * c[3];
  return n + hw(3) * e * 9 + se(e, Math.floor(e / 16)) + e * embed; // conv_exp (groups C3), its SE, projection
}

/** MACs per text of a fused `mct` tower over all `s` positions (RepMixer blocks: 1×11 dw mixer and ConvFFN conv, 1×1 d→4d→d). */
function mctMacs(s: number, d: number, layers: number, ffn: number, embed: number): number {
  const repMixer = s * d * 11 * 2 + 2 * s * d * 4 * d;
  const encoder = s * d * 3 * d + 2 * s * s * d + s * d * d + 2 * s * d * ffn; // qkv, QKᵀ + AV, out, fc1 + fc2
  return 2 * repMixer + layers * encoder + d * embed;
}

describe('mclip inherit', () => {
  const tmp = tempDir('inherit');
  afterAll(() => tmp.cleanup());
  const micro = join(tmp.dir, 'micro.safetensors');
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true, gradients: false });
    const cfg = microConfig();
    cfg.text.nTransformerLayers = 2;
    const m = new CLIP(cfg, { seed: 1 });
    saveModel(m, micro);
    m.dispose();
  });
  const run = (...extra: string[]) => runMain(['inherit', '--from', micro, '--out', join(tmp.dir, 'student.safetensors'), ...extra]);

  it('malformed values are usage errors naming the flag (exit 2)', async ({ expect }) => {
    expectOneLineError(expect, await run('--image-widths', '48,x,192,384'), /^mclip: usage error: --image-widths: expected comma-separated positive integers \(a,b,c,d\), got '48,x,192,384' \(see mclip inherit --help\)$/, 2);
    expectOneLineError(expect, await run('--image-depths', '1,,1,1'), /--image-depths: expected comma-separated positive integers/, 2);
    expectOneLineError(expect, await run('--text-layers', 'two'), /^mclip: usage error: --text-layers: expected a number, got 'two'/, 2);
    expectOneLineError(expect, await run('--text-width', '1.5'), /^mclip: usage error: --text-width: expected a positive integer, got 1.5/, 2);
    expectOneLineError(expect, await run('--image-ffn-ratio', '-1'), /--image-ffn-ratio: expected a positive number, got -1/, 2);
    expectOneLineError(expect, await runMain(['inherit', '--from', micro]), /missing required option --out/, 2);
  });

  it('sizes the teacher cannot give are one-line errors naming the flag (exit 1)', async ({ expect }) => {
    expectOneLineError(expect, await run('--text-width', '128'), /^mclip: error: --text-width 128 is above the teacher's text width 64$/);
    expectOneLineError(expect, await run('--text-layers', '3'), /^mclip: error: --text-layers 3: the teacher has 2 text transformer layers$/);
    expectOneLineError(expect, await run('--text-width', '48', '--text-heads', '5'), /^mclip: error: --text-heads 5 does not divide the text width 48$/);
    expectOneLineError(expect, await run('--text-width', '32', '--text-heads', '2'), /^mclip: error: --text-heads 2: heads of 32\/2 = 16 channels, but the teacher's are 32 wide \(heads are kept whole\)$/);
    expectOneLineError(expect, await run('--image-widths', '8,16,32'), /^mclip: error: --image-widths has 3 entries; the teacher has 4 MCi stages$/);
    expectOneLineError(expect, await run('--image-widths', '8,16,32,128'), /^mclip: error: --image-widths entry 4 \(128\) is above the teacher's 64/);
    expectOneLineError(expect, await run('--vit-layers', '1'), /^mclip: error: --vit-layers applies to ViT image towers/);
    expectOneLineError(expect, await run('--arch', 'mobileclip_s0'), /^mclip: error: wrong --arch\? .*micro\.safetensors does not fit mobileclip_s0: .*drop --arch$/);
  });
});

describeFixtures('mclip inherit from the official S0 checkpoint', () => {
  const tmp = tempDir('inherit-s0');
  afterAll(() => tmp.cleanup());
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true, gradients: false });
  });

  it('2 text layers, width 384 (6 heads), MCi widths 48/96/192/384: loads back with no config and no --arch; parameters as the formulas', async () => {
    const out = join(tmp.dir, 's0-student.safetensors');
    const r = await runMain([
      'inherit', '--from', fixture('mobileclip_s0', 'model_fp16.pt'), '--out', out,
      '--text-layers', '2', '--text-width', '384', '--text-heads', '6', '--image-widths', '48,96,192,384',
    ]);
    expect(r.status, show(r)).toBe(0);
    const image = mciParams([48, 96, 192, 384], [2, 6, 10, 2], 512);
    const text = mctParams(1024, 77, 384, 2, 1536, 512);
    const teacher = { image: mciParams([64, 128, 256, 512], [2, 6, 10, 2], 512), text: mctParams(1024, 77, 512, 4, 2048, 512) };
    expect(r.stdout).toContain(`teacher mobileclip_s0: image ${(teacher.image / 1e6).toFixed(3)} M (${teacher.image}), text ${(teacher.text / 1e6).toFixed(3)} M (${teacher.text})`);
    expect(r.stdout).toContain(`student mobileclip_s0_inherited: image ${(image / 1e6).toFixed(3)} M (${image}), text ${(text / 1e6).toFixed(3)} M (${text})`);

    const loaded = await loadModel(out);
    expect(loaded.config.name).toBe('mobileclip_s0_inherited');
    expect(loaded.config.text).toMatchObject({ dim: 384, nTransformerLayers: 2, nHeads: 6 });
    const p = countParams(loaded.model);
    expect({ image: p.image, text: p.text }).toEqual({ image, text });
    loaded.model.dispose();

    // The same tensors with no config at all: the architecture is read off the shapes.
    const bare = join(tmp.dir, 's0-student-bare.safetensors');
    writeSafetensors(bare, readSafetensors(out).tensors);
    const again = await loadModel(bare);
    const { name: _a, image: ia, ...ra } = again.config;
    const { name: _b, image: ib, ...rb } = loaded.config;
    expect(ra).toEqual(rb);
    expect({ ...ia, name: '' }).toEqual({ ...ib, name: '' });
    const q = countParams(again.model);
    expect({ image: q.image, text: q.text }).toEqual({ image, text });
    again.model.dispose();
  });

  it('the student read with no config exports to ONNX (ORT parity ≤ 1e-4); its fused MACs are the formulas', async () => {
    const bare = join(tmp.dir, 's0-student-bare.safetensors');
    const { model } = await loadModel(bare, { fused: true });
    try {
      const cost = modelCost(model);
      expect(cost.macs.image).toBe(mciMacs([48, 96, 192, 384], [2, 6, 10, 2], 512, 256));
      expect(cost.macs.text).toBe(mctMacs(77, 384, 2, 1536, 512));
      const r = await exportOnnx(model, join(tmp.dir, 's0-student.onnx'), { tower: 'both', opset: 17, verifyBatch: 2 });
      expect(r.verify!.relDiff.image_features).toBeLessThanOrEqual(1e-4);
      expect(r.verify!.relDiff.text_features).toBeLessThanOrEqual(1e-4);
    } finally {
      model.dispose();
    }
  });
});
