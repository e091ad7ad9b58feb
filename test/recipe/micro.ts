/**
 * The micro set-up of the recipe tests: a colour-square dataset, its vocabulary and a micro MobileCLIP
 * checkpoint (test/micro-config.ts), and the micro recipe that runs every model stage on them in seconds.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { initBackend } from '../../src/base/backend/index.js';
import { CLIP } from '../../src/base/model/clip.js';
import { saveModel } from '../../src/base/model/checkpoint.js';
import { microConfig } from '../micro-config.js';
import { buildColorDataset, each, writeColorVocab, type Rgb } from '../cli/color-data.js';

const COLORS: Record<string, Rgb> = { red: [220, 30, 30], green: [30, 200, 40], blue: [30, 40, 220], gray: [128, 128, 128] };

/** Builds DIR/data (train + eval splits), DIR/vocab and DIR/model.safetensors. */
export async function buildMicroInputs(dir: string): Promise<void> {
  await initBackend({ backend: 'wasm', quiet: true });
  await buildColorDataset(
    join(dir, 'data'),
    (['train', 'eval'] as const).map((split) => ({
      split, colors: each(COLORS, split === 'train' ? 4 : 2), size: 32, samplesPerShard: 8,
      shade: ([r, g, b]: Rgb, i: number): Rgb => [r, g - 5 * i, b + (split === 'eval' ? 3 : 0)], captions: (name: string) => [name, `the color ${name}`],
    })),
  );
  const vocabSize = writeColorVocab(join(dir, 'vocab'), Object.keys(COLORS).flatMap((c) => [`a ${c} square`, `the color ${c}`, c, `a photo of a ${c}`]));
  const cfg = microConfig();
  cfg.text.vocabSize = vocabSize;
  const m = new CLIP(cfg, { seed: 3 });
  saveModel(m, join(dir, 'model.safetensors'));
  m.dispose();
}

/** The micro recipe: TinyCLIP 50 %, token settings, the sigmoid switch + fine-tune, eval, ONNX export. */
export const MICRO_RECIPE = `# micro: every model stage on a micro model, in seconds
name: micro
seed: 1
model:
  checkpoint: model.safetensors
  vocab: vocab
  name: teacher
data: data
stages:
  - name: tiny50
    kind: distill
    sparsity: 0.5
    stage-steps: 4
    batch: 4
    teacher-engine: tfjs
  - name: tokens
    kind: tokens
    text-padding: truncate
  - name: sigmoid
    kind: attention
    from: tiny50
  - name: sigmoid-ft
    kind: finetune
    stage-steps: 2
    batch: 4
    teacher-engine: tfjs
  - name: table
    kind: eval
    latency: false
    engine: tfjs
    templates: single
  - name: onnx
    kind: export
    from: sigmoid-ft
`;

export function writeRecipe(dir: string, text: string, name = 'micro.yaml'): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}
