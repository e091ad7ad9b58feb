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
});
