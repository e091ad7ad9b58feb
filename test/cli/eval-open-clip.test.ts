import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { colorEvalSetup, each, type Rgb } from './color-data.js';
import { runCli, tempDir } from './helpers.js';
import { readSafetensors } from '../../src/base/io/safetensors.js';
import { CLIP } from '../../src/base/model/clip.js';
import { getConfig } from '../../src/base/model/configs.js';
import { saveOpenClip } from '../../src/base/model/open-clip/save.js';

const COLORS: Record<string, Rgb> = { red: [220, 30, 30], green: [30, 200, 40], blue: [30, 40, 220] };

describe('mclip eval on an open_clip-layout checkpoint (micro MobileCLIP2-S0 structure)', () => {
  const tmp = tempDir('eval-oc');
  const dir = tmp.dir;
  const opts = { env: { MCLIP_CACHE_DIR: join(dir, 'cache') } };
  const ckpt = join(dir, 'open_clip_model.safetensors');
  afterAll(() => tmp.cleanup());
  beforeAll(async () => {
    await colorEvalSetup(dir, each(COLORS, 3), 32);
    const vocab = readSafetensors(join(dir, 'a.safetensors')).tensors.get('text_encoder.embedding_layer.weight')!.shape[0];
    const cfg = getConfig('mobileclip2_s0');
    cfg.embedDim = 32;
    cfg.text = { ...cfg.text, vocabSize: vocab, dim: 64, nHeads: 1, nTransformerLayers: 1 };
    if (cfg.image.kind !== 'mci') throw new Error('expected MCi');
    cfg.image = { ...cfg.image, imageSize: 32, layers: [1, 1, 1, 1], embedDims: [8, 16, 32, 64] };
    const model = new CLIP(cfg, { seed: 5 });
    saveOpenClip(model, ckpt);
    model.dispose();
  });

  test('zero-shot and retrieval through the ONNX engine (export verified in onnxruntime), with no --arch', async () => {
    const r = await runCli(['eval', '--model', `OC=${ckpt}`, '--data', join(dir, 'data'), '--vocab', join(dir, 'vocab'), '--no-latency', '--json', join(dir, 'r.json')], opts);
    expect(r.status, r.stderr + r.stdout).toBe(0);
    expect(r.stderr).toMatch(/^mclip: OC: engine ort \(onnxruntime-node .*\)$/m);
    const rep = JSON.parse(readFileSync(join(dir, 'r.json'), 'utf8')) as { rows: Array<{ name: string; zeroShot: { top1: number; top5: number }; params: { total: number } }> };
    expect(rep.rows.map((x) => x.name)).toEqual(['OC']);
    expect(rep.rows[0].zeroShot.top5).toBe(1);
    expect(rep.rows[0].params.total).toBeGreaterThan(1e5);
  });
});
