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

/** Writes `dir/<split>/` shards and `dir/manifest.json`: keys s0, s1, … in colour order, label `category` = the colour name. */
export async function buildColorDataset(dir: string, o: ColorDatasetOptions): Promise<void> {
  const b = new DatasetBuilder(dir, { splits: [o.split], samplesPerShard: o.samplesPerShard });
  let k = 0;
  for (const [name, { rgb, n }] of Object.entries(o.colors)) {
    for (let i = 0; i < n; i++) {
      const px = new Uint8Array(o.size * o.size * 3);
      const c = o.shade(rgb, i);
      for (let p = 0; p < o.size * o.size; p++) px.set(c, p * 3);
      await b.add(o.split, `s${k++}`, { image: await rgbToPng(px, o.size, o.size), caption: `a ${name} square`, captions: o.captions(name), labels: { category: name } });
    }
  }
  await b.close({ name: 'colors', image: { width: o.size, height: o.size } });
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
