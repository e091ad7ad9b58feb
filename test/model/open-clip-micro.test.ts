import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { CLIP } from '../../src/base/model/clip.js';
import { loadModel, saveModel } from '../../src/base/model/checkpoint.js';
import { getConfig, type ClipConfig } from '../../src/base/model/configs.js';
import { openClipStateDict, saveOpenClip } from '../../src/base/model/open-clip/save.js';
import { reparameterize } from '../../src/base/model/reparameterize.js';
import { exportOnnx } from '../../src/export/index.js';
import { MICRO_CONTEXT, MICRO_VOCAB, microTokenRows } from '../micro-config.js';
import { relErr } from './helpers.js';

/**
 * The open_clip MobileCLIP2 trunks at micro size (every block type kept), with the open_clip text tower, at the
 * official head widths (an open_clip file stores no config: heads come back from those widths).
 */
function micro(kind: 'mci' | 'mci5' | 'vit' | 'vitclip'): ClipConfig {
  const cfg = getConfig({ mci: 'mobileclip2_s0', mci5: 'mobileclip2_s3', vit: 'mobileclip2_b', vitclip: 'mobileclip2_l14' }[kind]);
  cfg.name = `oc_${kind}_micro`;
  cfg.embedDim = 32;
  cfg.text = { ...cfg.text, contextLength: MICRO_CONTEXT, vocabSize: MICRO_VOCAB, dim: 64, nHeads: 1, nTransformerLayers: 2 };
  if (cfg.image.kind === 'mci' && kind === 'mci5') {
    // fastvit_mci3's five stages (two attention stages with LayerNorm2d, no stem scale branch) at micro widths
    const stages = cfg.image.stages!.map((s, i) => ({ ...s, depth: 1, width: 8 << i, ffnDims: [4 * (8 << i)], ...(s.mixer === 'attention' ? { heads: (8 << i) / 32 } : {}) }));
    cfg.image = { ...cfg.image, name: 'fastvit_mci5_micro', imageSize: 64, layers: stages.map((s) => s.depth), embedDims: stages.map((s) => s.width), stages };
  } else if (cfg.image.kind === 'mci') cfg.image = { ...cfg.image, name: 'fastvit_mci_micro', imageSize: 32, layers: [1, 1, 1, 1], embedDims: [8, 16, 32, 64], headDim: 32 };
  else if (kind === 'vitclip') cfg.image = { ...cfg.image, name: 'vit_clip_micro', imageSize: 28, embedDim: 64, layers: 2, heads: 1, posGrid: 2, patchSize: 14 };
  else cfg.image = { ...cfg.image, name: 'vit_mci_micro', imageSize: 32, embedDim: 64, layers: 2, heads: 1, posGrid: 2 };
  return cfg;
}

describe('open_clip layout: micro FastViT-MCi and ViT-MCi models', () => {
  let dir: string;
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true, gradients: false });
    dir = mkdtempSync(join(tmpdir(), 'mclip-oc-micro-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  for (const kind of ['mci', 'mci5', 'vit', 'vitclip'] as const) {
    test(`${kind}: timm / open_clip key names, save → load with no --arch gives the same config and outputs, unfused and fused`, async () => {
      const cfg = micro(kind);
      const model = new CLIP(cfg, { seed: 3 }).eval();
      const sd = openClipStateDict(model);
      const keys = [...sd.keys()];
      if (kind === 'mci5') {
        expect(keys).toContain('visual.trunk.stages.4.pos_emb.pos_enc.weight');
        expect(keys).toContain('visual.trunk.stages.4.blocks.0.norm.weight');
        expect(keys).not.toContain('visual.trunk.stages.4.blocks.0.norm.running_mean');
        expect(keys).not.toContain('visual.trunk.stem.0.conv_scale.conv.weight');
        expect(sd.get('visual.trunk.head.fc.weight')!.shape).toEqual([32, 256]);
      } else if (kind === 'mci') {
        expect(keys).toContain('visual.trunk.stages.3.pos_emb.pos_enc.weight');
        expect(keys).toContain('visual.trunk.final_conv.se.fc1.weight');
        expect(sd.get('visual.trunk.head.fc.weight')!.shape).toEqual([32, 128]);
      } else if (kind === 'vitclip') {
        expect(sd.get('visual.trunk.patch_embed.proj.weight')!.shape).toEqual([64, 3, 14, 14]);
        expect(keys).toContain('visual.trunk.norm_pre.weight');
        expect(sd.get('visual.trunk.pos_embed')!.shape).toEqual([1, 5, 64]);
        expect(sd.get('visual.trunk.head.weight')!.shape).toEqual([32, 64]);
      } else {
        expect(keys).toContain('visual.trunk.patch_embed.backbone.0.bn.running_mean');
        expect(keys).toContain('visual.trunk.blocks.1.attn.qkv.bias');
        expect(sd.get('visual.trunk.pos_embed')!.shape).toEqual([1, 4, 64]);
        expect(sd.get('visual.trunk.head.weight')!.shape).toEqual([32, 64]);
      }
      expect(keys).toContain('text.transformer.resblocks.1.attn.in_proj_weight');
      expect(sd.get('text.positional_embedding')!.shape).toEqual([MICRO_CONTEXT, 64]);
      // A non-zero head bias, so that dropping it anywhere shows.
      const bias = kind === 'mci' || kind === 'mci5' ? model.imageEncoder.get('model.head') : model.imageEncoder.get('model.classifier');
      const b = bias.namedParams().find(([n]) => n === 'bias')![1].variable;
      b.assign(tf.linspace(-0.5, 0.5, b.size));

      const size = cfg.image.imageSize;
      const images = tf.randomUniform([2, size, size, 3], 0, 1, 'float32', 1);
      const tokens = microTokenRows();
      const ref = { image: model.encodeImage(images), text: model.encodeText(tokens) };
      for (const fused of [false, true]) {
        if (fused) reparameterize(model);
        const path = join(dir, `${kind}-${fused}.safetensors`);
        saveOpenClip(model, path);
        const back = await loadModel(path);
        expect(back.layout.kind).toBe('open_clip');
        expect(back.storedFused).toBe(fused && (kind === 'mci' || kind === 'mci5'));
        // What the file cannot tell: the name and image size (the defaults of the trunk's kind come back).
        // A fused stem has no branches left to tell whether it had a scale branch (nor does it matter then).
        const unknown = { name: '', imageSize: 0, ...(fused ? { stemScaleBranch: undefined } : {}) };
        expect({ ...back.config.image, ...unknown }).toEqual({ ...cfg.image, ...unknown });
        expect({ ...back.config.text }).toEqual(cfg.text);
        expect(back.config.text.causalMasking).toBe(kind === 'vit');
        const img = back.model.encodeImage(images);
        const txt = back.model.encodeText(tokens);
        expect(relErr(ref.image.dataSync(), img.dataSync()), `image, fused ${fused}`).toBeLessThanOrEqual(1e-5);
        expect(relErr(ref.text.dataSync(), txt.dataSync()), `text, fused ${fused}`).toBeLessThanOrEqual(1e-5);
        // and through our own format (the config in the header keeps what shapes do not tell)
        const ours = join(dir, `${kind}-${fused}-ours.safetensors`);
        saveModel(back.model, ours);
        const again = await loadModel(ours);
        expect(again.config.image).toEqual(back.config.image);
        const img2 = again.model.encodeImage(images);
        expect(relErr(ref.image.dataSync(), img2.dataSync())).toBeLessThanOrEqual(1e-5);
        tf.dispose([img, txt, img2]);
        back.model.dispose();
        again.model.dispose();
      }
      // ONNX of the fused model in onnxruntime (the head bias is in the graph).
      const r = await exportOnnx(model, join(dir, `${kind}.onnx`), { tower: 'both', verifyBatch: 2 });
      expect(r.verify!.relDiff.image_features).toBeLessThanOrEqual(1e-4);
      expect(r.verify!.relDiff.text_features).toBeLessThanOrEqual(1e-4);
      tf.dispose([images, tokens, ref.image, ref.text]);
      model.dispose();
    });
  }
});
