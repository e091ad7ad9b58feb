/**
 * bench/dr_efficiency — a small replication of MobileCLIP's learning-efficiency claim on the emoji
 * data (methods.md §2): K teachers trained here on the emoji train split store their knowledge in
 * reinforced shards once; then `mobileclip_tiny` students train with λ = 0 (plain CLIP on the same
 * augmented images and captions) and with λ > 0 (distillation from the stored teacher embeddings)
 * for the same step budgets. Zero-shot category accuracy on the held-out vendor and retrieval R@1
 * are measured at several step counts.
 *
 *   npm run build && node dist/bench/dr_efficiency.js [--work DIR] [--teachers 2] [--teacher-steps 1200]
 *       [--student-steps 900] [--every 150] [--augs 5] [--batch 32] [--lambdas 0,0.75] [--eval-sample 1000]
 *
 * Teachers run in parallel, one process each, and so do the students (one wasm thread per process:
 * on this 2-core machine K = 2 teachers cost the wall time of one). Every stage is skipped when its
 * output exists, and every evaluation is cached in RUN/evals/ (the trainer keeps only the last two
 * checkpoints), so the script
 * can be re-run after an interruption. Each job's log goes to DIR/logs/. Prints a markdown table and
 * writes it to DIR/dr_efficiency.md.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { readSafetensors } from '../src/base/io/safetensors.js';
import { toFloat32 } from '../src/base/io/tensor-data.js';
import { arg, evaluate, latestStep, mclip, prepareData, reportPath, type Scores, type Setup, publish, runBench } from './common.js';

interface Row extends Scores {
  model: string;
  lambda: number | null;
  step: number;
}

/** exp(logit_scale) of a checkpoint: the teacher's own learned inverse temperature. */
function learnedScale(ckpt: string): number {
  const st = readSafetensors(ckpt);
  const t = st.tensors.get('logit_scale');
  if (!t) throw new Error(`${ckpt}: no logit_scale tensor`);
  return Math.exp(toFloat32(t)[0]);
}

async function main(): Promise<void> {
  const work = resolve(arg('work', 'bench-out/dr_efficiency'));
  const nTeachers = Number(arg('teachers', '2'));
  const teacherSteps = Number(arg('teacher-steps', '1200'));
  const studentSteps = Number(arg('student-steps', '900'));
  const every = Number(arg('every', '150'));
  const augs = arg('augs', '5');
  const batch = arg('batch', '32');
  const lambdas = arg('lambdas', '0,0.75').split(',').map(Number);
  const setup: Setup = { work, data: join(work, 'emoji'), vocab: join(work, 'vocab'), evalSample: Number(arg('eval-sample', '1000')) };
  const { data, vocab } = setup;
  const logs = join(work, 'logs');
  const dr = join(work, 'reinforced');
  await prepareData(setup, logs);

  // Teachers: same architecture, different seeds, trained on the plain (un-reinforced) train split.
  const teachers = Array.from({ length: nTeachers }, (_, i) => ({ k: i + 1, dir: join(work, `teacher-${i + 1}`) }));
  await Promise.all(
    teachers.map(async ({ k, dir }) => {
      if (existsSync(join(dir, 'model.safetensors'))) return;
      await mclip(['train', '--data', data, '--vocab', vocab, '--out', dir, '--steps', String(teacherSteps), '--batch', batch, '--warmup', '50', '--save-every', '100', '--resume', '--seed', String(k)], join(logs, `teacher-${k}.log`));
    }),
  );
  const teacherCkpts = teachers.map((t) => join(t.dir, 'model.safetensors'));
  // Each teacher's targets use its own learned temperature (these small teachers are far from the
  // official ones' 1/τ = 100; a fixed 100 would turn their soft targets into near one-hot ones).
  const scales = teacherCkpts.map(learnedScale);

  // Teachers are evaluated (one after the other) while the single reinforce process runs.
  const teacherScores = (async () => {
    const out: Scores[] = [];
    for (const [i, t] of teacherCkpts.entries()) out.push(await evaluate(t, join(dirname(t), 'evals', 'final'), setup, join(logs, `teacher-${i + 1}.log`)));
    return out;
  })();
  // Resumable by itself: finished shards are skipped.
  await mclip(
    ['reinforce', '--data', data, '--split', 'train', ...teacherCkpts.flatMap((t) => ['--teacher', t]), ...scales.flatMap((s) => ['--teacher-scale', s.toFixed(4)]), '--augs', augs, '--out', dr, '--vocab', vocab],
    join(logs, 'reinforce.log'),
  );

  const rows: Row[] = [];
  for (const [i, sc] of (await teacherScores).entries()) rows.push({ model: `teacher ${i + 1} (1/τ ${scales[i].toFixed(1)})`, lambda: null, step: teacherSteps, ...sc });

  // Students: one process per λ, in parallel; each trains to the next step count, is evaluated, goes on.
  const studentRows = await Promise.all(
    lambdas.map(async (lambda) => {
      const out = join(work, `student-lambda-${lambda}`);
      const log = join(logs, `student-lambda-${lambda}.log`);
      const mine: Row[] = [];
      for (let s = every; s <= studentSteps; s += every) {
        const name = `step-${String(s).padStart(8, '0')}`;
        const cache = join(out, 'evals', name);
        const cached = existsSync(reportPath(cache, 'category')) && existsSync(reportPath(cache, 'subcategory'));
        // The trainer keeps two checkpoints: one that is gone before it was evaluated is rebuilt by a
        // deterministic replay of the same run (same seed and arguments) in RUN/replay.
        const run = !cached && latestStep(out) > s ? join(out, 'replay') : out;
        const ckpt = join(run, 'checkpoints', name, 'model.safetensors');
        if (!cached && !existsSync(ckpt)) {
          await mclip(['train', '--data', dr, '--vocab', vocab, '--out', run, '--steps', String(studentSteps), '--batch', batch, '--warmup', '50', '--lambda', String(lambda), '--save-every', String(every), '--stop-after', String(s), '--resume', '--seed', '7'], log);
        }
        mine.push({ model: 'mobileclip_tiny', lambda, step: s, ...(await evaluate(ckpt, cache, setup, log)) });
      }
      return mine;
    }),
  );
  // Interleave by step so equal budgets sit next to each other.
  rows.push(...studentRows.flat().sort((a, b) => a.step - b.step || (a.lambda ?? 0) - (b.lambda ?? 0)));

  const pct = (v: number) => (100 * v).toFixed(1);
  const md = [
    `Emoji data: train on the google + twitter renderings, evaluate on ${rows[0].samples} samples evenly spaced over the held-out facebook renderings (zero-shot over the 10 categories with the emoji templates; retrieval with the real captions). Reinforcement: ${augs} stored augmentations per image and the embeddings of ${nTeachers} teacher(s) of each, of the real caption and of the synthetic captions. Batch ${batch}, lr 1e-3, 50 warm-up steps, cosine over ${studentSteps} student steps. Zero-shot is also reported over the emoji subcategories (e.g. 'face-smiling', 'animal-mammal'), which, unlike the category names, occur in the training captions.`,
    '',
    `| model | λ | steps | zero-shot category top-1 % (chance 10) | top-5 % | zero-shot subcategory top-1 % (${rows[0].subClasses} classes) | R@1 i→t % | R@1 t→i % |`,
    '|---|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.model} | ${r.lambda ?? '—'} | ${r.step} | ${pct(r.top1)} | ${pct(r.top5)} | ${pct(r.subTop1)} | ${pct(r.i2t)} | ${pct(r.t2i)} |`),
  ].join('\n');
  publish(join(work, 'dr_efficiency.md'), md);
}

runBench(main);
