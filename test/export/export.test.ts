import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { CLIP } from '../../src/base/model/clip.js';
import { getConfig, type ClipConfig } from '../../src/base/model/configs.js';
import { Linear } from '../../src/base/layers/linear.js';
import { Conv2d } from '../../src/base/layers/conv2d.js';
import { Initializer } from '../../src/base/nn/init.js';
import { FastViT } from '../../src/base/model/mci.js';
import { AttentionBlock } from '../../src/base/layers/attention-block.js';
import { RepMixerBlock } from '../../src/base/layers/repmixer-block.js';
import { TransformerEncoder } from '../../src/base/layers/transformer-encoder.js';
import { MHSA } from '../../src/base/layers/mhsa.js';
import { MultiHeadAttention } from '../../src/base/layers/multi-head-attention.js';
import { MclipError } from '../../src/errors.js';
import { buildOnnx, decodeModel, exportOnnx, extractTower, ortLatency, verifyOnnx } from '../../src/export/index.js';
import yargs from 'yargs';
import { exportCommand, runExport } from '../../src/cli/commands/export.js';
import { saveModel } from '../../src/base/model/checkpoint.js';
import { perturb } from './helpers.js';

let dir: string;

beforeAll(async () => {
  await initBackend({ backend: 'wasm', quiet: true, gradients: false });
  dir = mkdtempSync(join(tmpdir(), 'mclip-export-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function tinyModel(cfg: ClipConfig = getConfig('mobileclip_tiny'), seed = 3): CLIP {
  const m = new CLIP(cfg, { seed });
  m.eval();
  perturb(m, seed);
  return m;
}

describe('ONNX export: random-init tiny models', () => {
  test('mobileclip_tiny (mct text), both towers, opset 17: file layout and parity', async () => {
    const m = tinyModel();
    const path = join(dir, 'tiny.onnx');
    const r = await exportOnnx(m, path, { tower: 'both', opset: 17, verifyBatch: 3 });
    expect(r.verify!.relDiff.image_features).toBeLessThanOrEqual(1e-4);
    expect(r.verify!.relDiff.text_features).toBeLessThanOrEqual(1e-4);
    const model = decodeModel(readFileSync(path));
    expect(model.opsetImport[0].version).toBe(17);
    const io = (v: typeof model.graph.input) => v.map((x) => [x.name, x.type.tensorType.elemType, x.type.tensorType.shape.dim.map((d) => ('dimParam' in d ? d.dimParam : Number(d.dimValue)))]);
    expect(io(model.graph.input)).toEqual([
      ['image', 1, ['batch', 3, 64, 64]],
      ['tokens', 7, ['batch', 77]],
    ]);
    expect(io(model.graph.output)).toEqual([
      ['image_features', 1, ['batch', 128]],
      ['text_features', 1, ['batch', 128]],
    ]);
    const ops = new Set(model.graph.node.map((n) => n.opType));
    for (const op of ['Conv', 'Erf', 'LayerNormalization', 'Softmax', 'Gather', 'ArgMax', 'GatherND', 'ReduceMean', 'Sigmoid', 'Relu']) expect(ops.has(op), op).toBe(true);
    expect(ops.has('BatchNormalization')).toBe(false); // folded
    // The tower halves of a 'both' file run on their own (what ortLatency times).
    const s = await ort.InferenceSession.create(extractTower(readFileSync(path), 'text'));
    expect(s.inputNames).toEqual(['tokens']);
    await s.release();
    const lat = await ortLatency(path, 'image', { batch: 2, runs: 3, warmup: 1, threads: 1 });
    expect(lat.medianMs).toBeGreaterThan(0);
    expect(lat.p90Ms).toBeGreaterThanOrEqual(lat.medianMs);
    m.dispose();
  });

  test('opset 20 (Gelu op), int32 tokens, separate towers; base text tower with causal mask', async () => {
    const m = tinyModel(getConfig('mobileclip_tiny_base'), 5);
    const a = await exportOnnx(m, join(dir, 'img20.onnx'), { tower: 'image', opset: 20 });
    expect(Object.keys(a.verify!.relDiff)).toEqual(['image_features']);
    const b = await exportOnnx(m, join(dir, 'txt32.onnx'), { tower: 'text', opset: 17, tokensDtype: 'int32' });
    expect(b.verify!.relDiff.text_features).toBeLessThanOrEqual(1e-4);
    const ops = decodeModel(readFileSync(join(dir, 'img20.onnx'))).graph.node.map((n) => n.opType);
    expect(ops).toContain('Gelu');
    expect(ops).not.toContain('Erf');
    m.dispose();
  });

  test('pruned-style uneven widths export and match (narrow FFNs, fewer heads, heads·d ≠ dim)', async () => {
    const cfg = getConfig('mobileclip_tiny');
    const m = new CLIP(cfg, { seed: 7 });
    const init = new Initializer(11);
    const fv = m.imageEncoder.model as FastViT;
    // Stage-4 attention block: 2 of 4 heads (qkv 128 → 3·2·32), ConvFFN hidden 384 → 100.
    const ab = `network.${fv.network.length - 1}.0`;
    expect(fv.get(ab)).toBeInstanceOf(AttentionBlock);
    fv.replace(`${ab}.token_mixer`, new MHSA(128, 32, init, { heads: 2 }));
    fv.replace(`${ab}.convffn.fc1`, new Conv2d(128, 100, 1, { bias: true, init }));
    fv.replace(`${ab}.convffn.fc2`, new Conv2d(100, 128, 1, { bias: true, init }));
    // A stage-1 RepMixer block with ConvFFN hidden 48 → 13.
    expect(fv.get('network.0.0')).toBeInstanceOf(RepMixerBlock);
    fv.replace('network.0.0.convffn.fc1', new Conv2d(16, 13, 1, { bias: true, init }));
    fv.replace('network.0.0.convffn.fc2', new Conv2d(13, 16, 1, { bias: true, init }));
    // Text: first transformer layer with 3 heads of 24 (72 ≠ 128) and FFN 512 → 77.
    const text = m.textEncoder;
    const enc = text.transformer.at(1);
    expect(enc).toBeInstanceOf(TransformerEncoder);
    const attn = text.replace('transformer.1.pre_norm_mha.1', new MultiHeadAttention(128, 3, init, { headDim: 24 }));
    attn.causal = (enc as TransformerEncoder).attn.causal;
    text.replace('transformer.1.pre_norm_ffn.1', new Linear(128, 77, { init }));
    text.replace('transformer.1.pre_norm_ffn.4', new Linear(77, 128, { init }));
    // The last text RepMixer block: ConvFFN hidden 512 → 200.
    const last = `transformer.${text.transformer.length - 1}`;
    expect(text.get(last)).toBeInstanceOf(RepMixerBlock);
    text.replace(`${last}.convffn.fc1`, new Conv2d(128, 200, 1, { bias: true, init }));
    text.replace(`${last}.convffn.fc2`, new Conv2d(200, 128, 1, { bias: true, init }));
    m.eval();
    perturb(m, 7);
    const r = await exportOnnx(m, join(dir, 'uneven.onnx'), { tower: 'both' });
    expect(r.verify!.relDiff.image_features).toBeLessThanOrEqual(1e-4);
    expect(r.verify!.relDiff.text_features).toBeLessThanOrEqual(1e-4);
    const dims = new Map(decodeModel(readFileSync(join(dir, 'uneven.onnx'))).graph.initializer.map((t) => [t.name, t.dims.map(Number)]));
    const find = (re: RegExp) => [...dims.entries()].filter(([n]) => re.test(n)).map(([, d]) => d);
    expect(find(/network\.\d+\.0\.token_mixer\.q\.weight$/)).toEqual([[128, 64]]);
    expect(find(/transformer\.1\.pre_norm_mha\.1\.k\.weight$/)).toEqual([[128, 72]]);
    expect(find(/transformer\.1\.pre_norm_ffn\.1\.weight$/)).toEqual([[128, 77]]);
    expect(find(/transformer\.0\.convffn\.fc1\.weight$/)).toEqual([[512, 128, 1]]); // 1-D conv
    expect(find(/transformer\.3\.convffn\.fc1\.weight$/)).toEqual([[128, 200]]); // last block: EOT row only
    m.dispose();
  });

  test('ViT image tower (MobileCLIP-B structure at small width)', async () => {
    const cfg = getConfig('mobileclip_tiny_base');
    cfg.image = { kind: 'vit', name: 'vit_tiny', imageSize: 64, embedDim: 64, layers: 2, heads: 4, posGrid: 4 };
    const m = tinyModel(cfg, 9);
    // Non-zero CLS token.
    for (const [n, p] of m.namedParams()) if (n.endsWith('cls_token')) p.variable.assign(tf.randomNormal(p.variable.shape, 0, 1, 'float32', 1));
    const r = await exportOnnx(m, join(dir, 'vit.onnx'), { tower: 'image' });
    expect(r.verify!.relDiff.image_features).toBeLessThanOrEqual(1e-4);
    // 96×96 input: the positional table is resized at export (6×6 patches).
    const r2 = await exportOnnx(m, join(dir, 'vit96.onnx'), { tower: 'image', imageSize: 96 });
    expect(r2.verify!.relDiff.image_features).toBeLessThanOrEqual(1e-4);
    m.dispose();
  });

  test('a diverging graph fails verification naming the output', async () => {
    const m = tinyModel(getConfig('mobileclip_tiny'), 13);
    const bytes = buildOnnx(m, { tower: 'both' });
    // Change the text projection after building: text diverges, image does not.
    m.textEncoder.projection.assign(m.textEncoder.projection.mul(1.01));
    const err = await verifyOnnx(m, bytes, { tower: 'both', imageSize: [64, 64], tokensDtype: 'int64', batch: 2, tolerance: 1e-4, seed: 0 }).catch((e) => e);
    expect(err).toBeInstanceOf(MclipError);
    expect(String(err.message)).toMatch(/'text_features' differs/);
    m.dispose();
  });
});

describe('ONNX export: CLI command', () => {
  test('mclip export --checkpoint (unfused mclip safetensors) --tower text --opset 18 fuses, verifies, writes', async () => {
    const m = tinyModel(getConfig('mobileclip_tiny'), 17);
    const ckpt = join(dir, 'tiny.safetensors');
    saveModel(m, ckpt);
    m.dispose();
    const out = join(dir, 'cli.onnx');
    const argv = ['export', '--checkpoint', ckpt, '--out', out, '--tower', 'text', '--opset', '18', '--tokens-dtype', 'int32', '--latency'];
    await exportCommand(yargs(argv).option('quiet', { type: 'boolean', default: true }).option('backend', { type: 'string', default: 'wasm' }).strict().exitProcess(false)).parseAsync();
    const model = decodeModel(readFileSync(out));
    expect(model.opsetImport[0].version).toBe(18);
    expect(model.graph.input.map((i) => [i.name, i.type.tensorType.elemType])).toEqual([['tokens', 6]]);
    expect(model.graph.output.map((o) => o.name)).toEqual(['text_features']);
  });

  test('unreadable / missing checkpoints and bad options give clear MclipErrors', async () => {
    const bad = join(dir, 'bad.pt');
    writeFileSync(bad, 'this is not a checkpoint');
    const base = { arch: 'mobileclip_tiny', out: join(dir, 'x.onnx'), tower: 'both', opset: 17, tokensDtype: 'int64', verify: true, latency: false, quiet: true, backend: 'wasm' };
    const e1 = await runExport({ ...base, checkpoint: bad }).catch((e) => e);
    expect(e1).toBeInstanceOf(MclipError);
    expect(String(e1.message)).toContain(bad);
    const e2 = await runExport({ ...base, checkpoint: join(dir, 'missing.pt') }).catch((e) => e);
    expect(e2).toBeInstanceOf(MclipError);
    expect(String(e2.message)).toMatch(/not found/);
    const e3 = await runExport({ ...base, checkpoint: bad, opset: 13 }).catch((e) => e);
    expect(String(e3.message)).toMatch(/--opset/);
    const e4 = await runExport({ ...base, checkpoint: bad, tower: 'audio' }).catch((e) => e);
    expect(String(e4.message)).toMatch(/--tower/);
  });
});
