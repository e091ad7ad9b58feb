/**
 * Other plug-ins keep a sigmoid model's kernel and its recorded bias b: TinyCLIP's text and image pruners and
 * manual inheritance carry `attention` and `attentionParams` into the smaller model's config.
 */
import { beforeAll, describe, expect, test } from 'vitest';
import { initBackend } from '../../src/base/backend/index.js';
import { CLIP } from '../../src/base/model/clip.js';
import { mciStages, textLayers } from '../../src/base/model/configs.js';
import { pruneText } from '../../src/distill/masks/prune-text.js';
import { pruneImage } from '../../src/distill/masks/prune-image.js';
import { textMaskSizes } from '../../src/distill/masks/text-masks.js';
import { imageMaskSizes } from '../../src/distill/masks/image-masks.js';
import { SIGMOID_KERNEL, withSigmoidAttention } from '../../src/sigmoid-attn/index.js';
import { microConfig } from '../micro-config.js';
import * as tf from '../../src/base/tf.js';
import { ImageGates } from '../../src/distill/masks/image-gates.js';
import { exportStateDict } from '../../src/base/model/state-dict.js';
import { expectImageGatesPruneExactly, spreadLogAlphas } from '../distill/mask-helpers.js';

beforeAll(async () => {
  await initBackend({ backend: 'wasm', quiet: true });
});

const half = (n: number): Float32Array => Float32Array.from({ length: n }, (_, i) => (i % 2 === 0 ? 1 : 0));

describe('sigmoid attention through the pruners', () => {
  test('pruneText and pruneImage keep the kernel and b of every attention layer', () => {
    const cfg = withSigmoidAttention(microConfig());
    const model = new CLIP(cfg, { seed: 1 });
    const ts = textMaskSizes(model);
    const text = pruneText(model, { layers: ts.layers.map((l) => ({ heads: l.heads != null ? half(l.heads) : undefined, ffn: half(l.ffn) })) });
    const want = textLayers(cfg.text).filter((l) => l.mixer === 'attention').map((l) => (l.mixer === 'attention' ? [l.attention, l.attentionParams] : null));
    const got = textLayers(text.config.text).filter((l) => l.mixer === 'attention').map((l) => (l.mixer === 'attention' ? [l.attention, l.attentionParams] : null));
    expect(want.length).toBeGreaterThan(0);
    expect(want.every((w) => w?.[0] === SIGMOID_KERNEL)).toBe(true);
    expect(got).toEqual(want);
    const is = imageMaskSizes(model);
    const image = pruneImage(model, { stages: is.stages.map((st) => ({ blocks: st.blocks.map((b) => ({ heads: b.heads != null ? half(b.heads) : undefined, ffn: half(b.ffn) })) })) });
    if (cfg.image.kind !== 'mci' || image.config.image.kind !== 'mci') throw new Error('expected MCi');
    const wantI = mciStages(cfg.image).filter((s) => s.mixer === 'attention').map((s) => [s.attention, s.attentionParams]);
    expect(wantI.length).toBeGreaterThan(0);
    expect(mciStages(image.config.image).filter((s) => s.mixer === 'attention').map((s) => [s.attention, s.attentionParams])).toEqual(wantI);
    for (const m of [model, text.model, image.model]) m.dispose();
  });

  test('MCi attention stage with QK-norm and hybrid-norm: head and ConvFFN masks prune exactly (masked == pruned), the norms kept; stage channel masks refused', () => {
    const before = tf.memory().numTensors;
    const cfg = withSigmoidAttention(microConfig(), { qkNorm: true, hybridNorm: true });
    if (cfg.image.kind !== 'mci') throw new Error('expected an MCi image tower');
    expect(mciStages(cfg.image).filter((st) => st.mixer === 'attention').every((st) => st.qkNorm && st.attnOutNorm)).toBe(true);
    const model = new CLIP(cfg, { seed: 3 });
    const x = tf.randomUniform([2, 32, 32, 3], 0, 1, 'float32', 5) as tf.Tensor4D;
    // stage channel masks are refused in front of a hybrid-norm LayerNorm (it normalises over every channel)
    const withChannels = new ImageGates(model, { seed: 1 });
    withChannels.install();
    for (const la of withChannels.logAlphas) tf.tidy(() => la.assign(tf.randomUniform(la.shape, -3, 3, 'float32', 7)));
    model.eval();
    expect(() => withChannels.prune(model)).toThrow(/attn_out_norm\.weight': a hybrid-norm LayerNorm over the stage channels cannot follow a stage channel mask/);
    withChannels.dispose();
    model.train();
    const gates = new ImageGates(model, { seed: 1, channels: false });
    gates.install();
    spreadLogAlphas(gates, 60);
    const pruned = expectImageGatesPruneExactly(model, gates, x);
    const sd = exportStateDict(pruned);
    const norms = [...sd.keys()].filter((k) => /token_mixer\.[qk]_norm\.|attn_out_norm\./.test(k));
    expect(norms.length).toBe(6);
    for (const k of norms) expect(sd.get(k)!.data, k).toEqual(exportStateDict(model).get(k)!.data);
    pruned.dispose();
    gates.dispose();
    model.dispose();
    x.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
