/**
 * The small synthetic datasets of the CLI tests: flat colour squares with captions, as webdataset shards
 * (DatasetBuilder), and a BPE vocabulary over their captions.
 */
import { join } from 'node:path';

import { initBackend } from '../../src/base/backend/index.js';
import { DatasetBuilder, rgbToPng } from '../../src/base/data/index.js';
import { saveModel } from '../../src/base/model/checkpoint.js';
import { CLIP } from '../../src/base/model/clip.js';
import { getConfig } from '../../src/base/model/configs.js';
import { trainVocab, writeVocab } from '../../src/base/tokenizer/index.js';

export type Rgb = [number, number, number];

export interface ColorDatasetOptions {
  split: string;
  /** Colour name → its RGB and how many samples (shades) of it. */
  colors: Record<string, { rgb: Rgb; n: number }>;
  /** Image side in pixels. */
  size: number;
  samplesPerShard: number;
  /** The i-th shade of a colour. */
  shade: (rgb: Rgb, i: number) => Rgb;
  /** Alternative captions of a colour (the caption itself is `a NAME square`). */
  captions: (name: string) => string[];
}

/** Writes `dir/<split>/` shards (one split, or several: a list of options) and `dir/manifest.json`: keys s0, s1, … in colour order, label `category` = the colour name. */
export async function buildColorDataset(dir: string, o: ColorDatasetOptions | readonly ColorDatasetOptions[]): Promise<void> {
  const parts = Array.isArray(o) ? (o as readonly ColorDatasetOptions[]) : [o as ColorDatasetOptions];
  const first = parts[0]!;
  const b = new DatasetBuilder(dir, { splits: parts.map((p) => p.split), samplesPerShard: first.samplesPerShard });
  let k = 0;
  for (const p of parts) {
    for (const [name, { rgb, n }] of Object.entries(p.colors)) {
      for (let i = 0; i < n; i++) {
        const px = new Uint8Array(p.size * p.size * 3);
        const c = p.shade(rgb, i);
        for (let q = 0; q < p.size * p.size; q++) px.set(c, q * 3);
        await b.add(p.split, `s${k++}`, { image: await rgbToPng(px, p.size, p.size), caption: `a ${name} square`, captions: p.captions(name), labels: { category: name } });
      }
    }
  }
  await b.close({ name: 'colors', image: { width: first.size, height: first.size } });
}

/** A vocabulary (asked 600 ids) over `captions` plus filler words; written to `dir`; returns its real size. */
export function writeColorVocab(dir: string, captions: readonly string[]): number {
  const v = trainVocab([...captions, ...Array.from({ length: 200 }, (_, i) => `word${i} thing${i % 7}`)], 600);
  writeVocab(dir, v);
  return Object.keys(v.vocab).length;
}

/** `n` samples of each colour. */
export function each(colors: Record<string, Rgb>, n: number): Record<string, { rgb: Rgb; n: number }> {
  return Object.fromEntries(Object.entries(colors).map(([name, rgb]) => [name, { rgb, n }]));
}


/**
 * The eval tests' set-up: an `eval` split of shaded colour squares in `dir/data`, a vocabulary in
 * `dir/vocab`, and two randomly initialised mobileclip_tiny models `dir/a.safetensors` (seed 1), `dir/b.safetensors` (seed 2).
 */
export async function colorEvalSetup(dir: string, colors: Record<string, { rgb: Rgb; n: number }>, size: number): Promise<void> {
  await buildColorDataset(join(dir, 'data'), {
    split: 'eval', colors, size, samplesPerShard: 4,
    shade: ([r, g, b], i) => [r - 10 * i, g, b], captions: (name) => [name],
  });
  const cfg = getConfig('mobileclip_tiny');
  cfg.text.vocabSize = writeColorVocab(join(dir, 'vocab'), Object.keys(colors).flatMap((c) => [`a ${c} square`, `an emoji of ${c}`, c]));
  await initBackend({ backend: 'wasm', quiet: true, gradients: false });
  for (const [file, seed] of [['a.safetensors', 1], ['b.safetensors', 2]] as const) {
    const model = new CLIP(cfg, { seed });
    saveModel(model, join(dir, file));
    model.dispose();
  }
}
