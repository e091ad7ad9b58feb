/**
 * bench/dr_efficiency — a small replication of MobileCLIP's learning-efficiency claim on the emoji
 * data (methods.md §2): a teacher trained here on the emoji train split stores its knowledge in
 * reinforced shards once; then `mobileclip_tiny` students train with λ = 0 (plain CLIP on the same
 * augmented images and captions) and with λ > 0 (distillation from the stored teacher embeddings)
 * for the same step budgets. Zero-shot category accuracy on the held-out vendor and retrieval R@1
 * are measured at several step counts.
 *
 *   npm run build && node dist/bench/dr_efficiency.js [--work DIR] [--teacher-steps 300]
 *       [--student-steps 200] [--every 50] [--augs 5] [--batch 32] [--lambdas 0,0.9]
 *
 * Every stage is skipped when its output exists, so the script can be re-run after an interruption.
 * Prints a markdown table and writes it to DIR/dr_efficiency.md.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readImageTextDataset } from '../src/base/data/index.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = join(ROOT, 'bin', 'mclip.js');

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : def;
}

function mclip(args: string[]): string {
  console.error(`$ mclip ${args.join(' ')}`);
  const r = spawnSync(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`mclip ${args[0]} failed (exit ${r.status})`);
  return r.stdout;
}

interface Row {
  model: string;
  lambda: number | null;
  step: number;
  top1: number;
  top5: number;
  i2t: number;
  t2i: number;
}

function evaluate(model: string, work: string, vocab: string, data: string): Omit<Row, 'model' | 'lambda' | 'step'> {
  const report = join(work, 'eval-tmp.json');
  mclip(['eval', '--model', model, '--data', data, '--split', 'eval', '--vocab', vocab, '--no-latency', '--json', report, '--quiet']);
  const r = JSON.parse(readFileSync(report, 'utf8')) as { rows: Array<{ zeroShot: { top1: number; top5: number }; retrieval: { i2t: { r1: number }; t2i: { r1: number } } }> };
  const row = r.rows[0];
  return { top1: row.zeroShot.top1, top5: row.zeroShot.top5, i2t: row.retrieval.i2t.r1, t2i: row.retrieval.t2i.r1 };
}

async function main(): Promise<void> {
  const work = resolve(arg('work', 'bench-out/dr_efficiency'));
  const teacherSteps = Number(arg('teacher-steps', '300'));
  const studentSteps = Number(arg('student-steps', '200'));
  const every = Number(arg('every', '50'));
  const augs = arg('augs', '5');
  const batch = arg('batch', '32');
  const lambdas = arg('lambdas', '0,0.9').split(',').map(Number);
  const data = join(work, 'emoji');
  const vocab = join(work, 'vocab');
  const dr = join(work, 'reinforced');
  if (!existsSync(join(data, 'manifest.json'))) mclip(['data', 'emoji', '--out', data]);
  if (!existsSync(join(vocab, 'clip-vocab.json'))) {
    // Vocabulary from the training split's captions only (the held-out vendor shares the names).
    const caps = join(work, 'captions.txt');
    const lines: string[] = [];
    for await (const smp of readImageTextDataset(data, 'train')) lines.push(smp.caption, ...smp.captions);
    writeFileSync(caps, lines.join('\n'));
    mclip(['vocab', 'train', '--texts', caps, '--size', '4096', '--out', vocab]);
  }
  const teacher = join(work, 'teacher');
  if (!existsSync(join(teacher, 'model.safetensors'))) {
    mclip(['train', '--data', data, '--vocab', vocab, '--out', teacher, '--steps', String(teacherSteps), '--batch', batch, '--save-every', '50', '--resume', '--seed', '1']);
  }
  // Resumable by itself: finished shards are skipped.
  mclip(['reinforce', '--data', data, '--split', 'train', '--teacher', join(teacher, 'model.safetensors'), '--augs', augs, '--out', dr, '--vocab', vocab]);
  const rows: Row[] = [{ model: 'teacher', lambda: null, step: teacherSteps, ...evaluate(join(teacher, 'model.safetensors'), work, vocab, data) }];
  for (const lambda of lambdas) {
    const out = join(work, `student-lambda-${lambda}`);
    for (let s = every; s <= studentSteps; s += every) {
      const ckpt = join(out, 'checkpoints', `step-${String(s).padStart(8, '0')}`, 'model.safetensors');
      if (!existsSync(ckpt)) {
        mclip(['train', '--data', dr, '--vocab', vocab, '--out', out, '--steps', String(studentSteps), '--batch', batch, '--lambda', String(lambda), '--save-every', String(every), '--stop-after', String(s), '--resume', '--seed', '2']);
      }
      rows.push({ model: 'mobileclip_tiny', lambda, step: s, ...evaluate(ckpt, work, vocab, data) });
    }
  }
  const pct = (v: number) => (100 * v).toFixed(1);
  const md = [
    `Emoji data: train on the google + twitter renderings, evaluate on the held-out facebook renderings (zero-shot over the categories, emoji templates; retrieval with the real captions). Reinforcement: ${augs} stored augmentations per image and the teacher's embeddings of each, of the real caption and of the alternative captions. Batch ${batch}.`,
    '',
    '| model | λ | steps | zero-shot top-1 % | top-5 % | R@1 i→t % | R@1 t→i % |',
    '|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.model} | ${r.lambda ?? '—'} | ${r.step} | ${pct(r.top1)} | ${pct(r.top5)} | ${pct(r.i2t)} | ${pct(r.t2i)} |`),
  ].join('\n');
  writeFileSync(join(work, 'dr_efficiency.md'), md + '\n');
  console.log(md);
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : String(e));
  process.exit(1);
});
