/**
 * bench/inherit — TinyCLIP's manual weight inheritance (methods.md §3.2) on the emoji data: does a
 * smaller student cut out of a trained teacher (`mclip inherit`: strided layers, prefix widths) train
 * faster than the same student architecture from a random init?
 *
 *   npm run build && node dist/bench/inherit.js [--work DIR] [--teacher-steps 300] [--student-steps 300]
 *       [--every 100] [--batch 32] [--warmup 30] [--text-layers 1] [--text-width 64] [--text-heads 2]
 *       [--image-widths 8,16,32,64] [--eval-sample 1000] [--backend NAME]
 *       [--teacher CKPT --vocab DIR] [--data DIR] [--workers 1]
 *
 * With --teacher (e.g. models/mclip-emoji.safetensors with --vocab models/vocab) the trained model is the
 * teacher and no teacher is trained. --workers is passed to each student's `mclip train` (the two students
 * run in parallel, so the default 1 keeps one rank per core).
 *
 * Stages: emoji data + vocabulary (as bench/dr_efficiency), one mobileclip_tiny teacher, the inherited
 * student (`mclip inherit`), the scratch student (the inherited student's config, `new CLIP(config,
 * { seed: 7 })`, written in-process), then both students trained in parallel (one process each, same
 * seed, schedule and data order) and evaluated at step 0 and every --every steps. Every stage is skipped
 * when its output exists and every evaluation is cached in RUN/evals/, so the script can be re-run after
 * an interruption; the wall time of each stage that ran is kept in DIR/timings.json. Each job's log
 * goes to DIR/logs/. Prints a markdown table and writes it to DIR/inherit.md.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { initBackend } from '../src/base/backend/index.js';
import { loadModel, readCheckpointFile, saveModel } from '../src/base/model/checkpoint.js';
import { CLIP } from '../src/base/model/clip.js';
import { countParams } from '../src/eval/cost.js';
import { arg, evaluate, latestStep, mclip, prepareData, reportPath, type Scores, type Setup, publish, runBench, Timings } from './common.js';

interface Row extends Scores {
  model: string;
  init: string;
  step: number;
  /** Trainable parameters of the training-form (unfused) model. */
  trainParams: { image: number; text: number };
  /** Mean training loss over the last logged steps up to `step` (NaN at step 0). */
  trainLoss: number;
}


const ckptName = (s: number) => `step-${String(s).padStart(8, '0')}`;
const evalCached = (cache: string) => existsSync(reportPath(cache, 'category')) && existsSync(reportPath(cache, 'subcategory'));

/** Mean loss of the last N logged steps ≤ STEP in RUN/metrics.jsonl (the last record of a step wins; NaN when none). */
function trainLoss(run: string, step: number, n = 20): number {
  const p = join(run, 'metrics.jsonl');
  if (step <= 0 || !existsSync(p)) return NaN;
  const byStep = new Map<number, number>();
  for (const line of readFileSync(p, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    const m = JSON.parse(line) as { step: number; loss: number };
    byStep.set(m.step, m.loss);
  }
  const xs: number[] = [];
  for (let s = step - n + 1; s <= step; s++) if (byStep.has(s)) xs.push(byStep.get(s)!);
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN;
}

/** The two "student …: image X M (N), text Y M (N)" lines that `mclip inherit` prints. */
function parseInheritCounts(out: string): Record<'teacher' | 'student', { image: number; text: number }> {
  const get = (who: string) => {
    const m = new RegExp(`^${who} \\S+: image [\\d.]+ M \\((\\d+)\\), text [\\d.]+ M \\((\\d+)\\)`, 'm').exec(out);
    if (!m) throw new Error(`mclip inherit: no '${who}' parameter line in its output:\n${out}`);
    return { image: Number(m[1]), text: Number(m[2]) };
  };
  return { teacher: get('teacher'), student: get('student') };
}

async function main(): Promise<void> {
  const work = resolve(arg('work', 'bench-out/inherit'));
  const teacherSteps = Number(arg('teacher-steps', '300'));
  const studentSteps = Number(arg('student-steps', '300'));
  const every = Number(arg('every', '100'));
  const batch = arg('batch', '32');
  const warmup = arg('warmup', '30');
  const spec = { textLayers: arg('text-layers', '1'), textWidth: arg('text-width', '64'), textHeads: arg('text-heads', '2'), imageWidths: arg('image-widths', '8,16,32,64') };
  const backend = arg('backend', '');
  const given = arg('teacher', '');
  const workers = arg('workers', '1');
  const setup: Setup = { work, data: resolve(arg('data', join(work, 'emoji'))), vocab: resolve(arg('vocab', join(work, 'vocab'))), evalSample: Number(arg('eval-sample', '1000')) };
  const { data, vocab } = setup;
  const logs = join(work, 'logs');
  const timings = new Timings(join(work, 'timings.json'));
  const wallStart = Date.now();
  const be = backend ? ['--backend', backend] : [];

  await timings.stage('data + vocabulary', existsSync(join(data, 'manifest.json')) && existsSync(join(vocab, 'clip-vocab.json')), () => prepareData(setup, logs));

  // Teacher: the given checkpoint, or mobileclip_tiny trained here from random init (seed 1).
  const teacherDir = given ? join(work, 'teacher-given') : join(work, 'teacher');
  const teacher = given ? resolve(given) : join(teacherDir, 'model.safetensors');
  await timings.stage(`teacher: train ${teacherSteps} steps`, existsSync(teacher), () =>
    mclip(['train', ...be, '--data', data, '--vocab', vocab, '--out', teacherDir, '--arch', 'mobileclip_tiny', '--steps', String(teacherSteps), '--batch', batch, '--warmup', warmup, '--save-every', '100', '--resume', '--seed', '1'], join(logs, 'teacher.log')),
  );

  // The teacher is evaluated while the two students are made (the second core is free then).
  const teacherCache = join(teacherDir, 'evals', 'final');
  const teacherScores = (async () => {
    await timings.stage('teacher: eval', evalCached(teacherCache), () => evaluate(teacher, teacherCache, setup, join(logs, 'teacher.log')));
    return evaluate(teacher, teacherCache, setup, join(logs, 'teacher.log'));
  })();

  // Student by inheritance; its stdout (the parameter counts) is kept beside it.
  const inherited = join(work, 'student-inherited.safetensors');
  const inheritOut = join(work, 'student-inherited.params.txt');
  await timings.stage('student: inherit', existsSync(inherited) && existsSync(inheritOut), async () => {
    const out = await mclip(['inherit', ...be, '--from', teacher, '--out', inherited, '--text-layers', spec.textLayers, '--text-width', spec.textWidth, '--text-heads', spec.textHeads, '--image-widths', spec.imageWidths], join(logs, 'inherit.log'));
    writeFileSync(inheritOut, out);
  });
  const printed = parseInheritCounts(readFileSync(inheritOut, 'utf8'));

  // Student from scratch: the inherited student's config, a random init (seed 7), in-process.
  const scratch = join(work, 'student-scratch.safetensors');
  await initBackend({ backend: backend || undefined, gradients: false, quiet: true });
  await timings.stage('student: scratch init', existsSync(scratch), async () => {
    const { config } = await readCheckpointFile(inherited);
    if (!config) throw new Error(`${inherited}: no config in its header`);
    const m = new CLIP(config, { seed: 7 });
    try {
      saveModel(m, scratch, { 'mclip.note': 'bench/inherit: random init (seed 7) of the inherited student architecture' });
    } finally {
      m.dispose();
    }
  });

  // Training-form trainable parameters, counted in-process (and checked against what inherit printed).
  const trainParams = async (path: string) => {
    const { model } = await loadModel(path);
    try {
      const p = countParams(model);
      return { image: p.image, text: p.text };
    } finally {
      model.dispose();
    }
  };
  const tParams = await trainParams(teacher);
  const sParams = await trainParams(inherited);
  const scParams = await trainParams(scratch);
  for (const [what, a, b] of [
    ['teacher', tParams, printed.teacher],
    ['inherited student', sParams, printed.student],
    ['scratch student', scParams, printed.student],
  ] as const) {
    if (a.image !== b.image || a.text !== b.text) throw new Error(`${what}: counted ${a.image}/${a.text} parameters, inherit printed ${b.image}/${b.text}`);
  }

  const rows: Row[] = [
    given
      ? { model: `teacher ${given}`, init: 'given', step: NaN, trainParams: tParams, trainLoss: NaN, ...(await teacherScores) }
      : { model: 'teacher mobileclip_tiny', init: 'random (seed 1)', step: teacherSteps, trainParams: tParams, trainLoss: trainLoss(teacherDir, teacherSteps), ...(await teacherScores) },
  ];

  // Students: one process each, in parallel; each is evaluated at step 0, then trains to the next step count, is evaluated, goes on.
  const students = [
    { key: 'inherited', init: inherited, label: 'inherited from the teacher' },
    { key: 'scratch', init: scratch, label: 'random (seed 7)' },
  ];
  const studentStart = Date.now();
  const studentRows = await Promise.all(
    students.map(async ({ key, init, label }) => {
      const out = join(work, `student-${key}`);
      const log = join(logs, `student-${key}.log`);
      const mine: Row[] = [];
      const base = { model: 'student', init: label, trainParams: sParams };
      const cache0 = join(out, 'evals', ckptName(0));
      await timings.stage(`student ${key}: eval step 0`, evalCached(cache0), () => evaluate(init, cache0, setup, log));
      mine.push({ ...base, step: 0, trainLoss: NaN, ...(await evaluate(init, cache0, setup, log)) });
      let prev = 0;
      for (let s = every; s <= studentSteps; s += every) {
        const name = ckptName(s);
        const cache = join(out, 'evals', name);
        const cached = evalCached(cache);
        // The trainer keeps two checkpoints: one that is gone before it was evaluated is rebuilt by a
        // deterministic replay of the same run (same seed and arguments) in RUN/replay.
        const run = !cached && latestStep(out) > s ? join(out, 'replay') : out;
        const ckpt = join(run, 'checkpoints', name, 'model.safetensors');
        await timings.stage(`student ${key}: train ${prev}→${s}${run === out ? '' : ' (replay)'}`, cached || existsSync(ckpt), () =>
          mclip(['train', ...be, '--data', data, '--vocab', vocab, '--out', run, '--init', init, '--steps', String(studentSteps), '--batch', batch, '--warmup', warmup, '--save-every', String(every), '--stop-after', String(s), '--resume', '--seed', '7', '--workers', workers], log),
        );
        await timings.stage(`student ${key}: eval step ${s}`, cached, () => evaluate(ckpt, cache, setup, log));
        mine.push({ ...base, step: s, trainLoss: trainLoss(out, s), ...(await evaluate(ckpt, cache, setup, log)) });
        prev = s;
      }
      return mine;
    }),
  );
  const studentWall = (Date.now() - studentStart) / 1000;
  // Interleave by step so equal budgets sit next to each other (inherited first).
  rows.push(...studentRows.flat().sort((a, b) => a.step - b.step || Number(a.init.startsWith('random')) - Number(b.init.startsWith('random'))));

  const pct = (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? '—' : (100 * v).toFixed(1));
  const mil = (n: number) => (n / 1e6).toFixed(3);
  const r = rows[0];
  const cat = r.baselines.category;
  const sub = r.baselines.subcategory;
  const head = `| model | init | steps | params image / text (M) | MACs image / text (M) | train loss (last 20 steps) | zero-shot category top-1 % (${cat?.classes ?? 10} classes) | zero-shot subcategory top-1 % (${r.subClasses} classes) | R@1 i→t % | R@10 i→t % | R@1 t→i % | R@10 t→i % |`;
  const table = [
    head,
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows.map(
      (x) =>
        `| ${x.model} | ${x.init} | ${Number.isFinite(x.step) ? x.step : "—"} | ${mil(x.trainParams.image)} / ${mil(x.trainParams.text)} | ${(x.macs.image / 1e6).toFixed(2)} / ${(x.macs.text / 1e6).toFixed(2)} | ${Number.isFinite(x.trainLoss) ? x.trainLoss.toFixed(3) : '—'} | ${pct(x.top1)} | ${pct(x.subTop1)} | ${pct(x.i2t)} | ${pct(x.i2t10)} | ${pct(x.t2i)} | ${pct(x.t2i10)} |`,
    ),
    ...(cat && sub
      ? [
          `| chance | — | — | — | — | — | ${pct(cat.chance.top1)} | ${pct(sub.chance.top1)} | ${pct(cat.chance.i2tR1)} | — | ${pct(cat.chance.t2iR1)} | ${cat.chance.t2iR1 !== undefined ? pct(Math.min(1, 10 * cat.chance.t2iR1)) : '—'} |`,
          `| majority class | — | — | — | — | — | ${pct(cat.majority.top1)} (${cat.majority.class}) | ${pct(sub.majority.top1)} (${sub.majority.class}) | — | — | — | — |`,
        ]
      : []),
  ];
  // Inherited − scratch at each equal step budget, in points.
  const diff = ['| steps | Δ category top-1 | Δ subcategory top-1 | Δ R@1 i→t | Δ R@10 i→t | Δ R@1 t→i | Δ R@10 t→i | Δ train loss |', '|---|---|---|---|---|---|---|---|'];
  for (let s = 0; s <= studentSteps; s += every) {
    const a = rows.find((x) => x.model === 'student' && x.step === s && !x.init.startsWith('random'));
    const b = rows.find((x) => x.model === 'student' && x.step === s && x.init.startsWith('random'));
    if (!a || !b) continue;
    const d = (f: (x: Row) => number) => {
      const v = 100 * (f(a) - f(b));
      return `${v >= 0 ? '+' : ''}${v.toFixed(1)}`;
    };
    const dl = Number.isFinite(a.trainLoss) && Number.isFinite(b.trainLoss) ? `${a.trainLoss - b.trainLoss >= 0 ? '+' : ''}${(a.trainLoss - b.trainLoss).toFixed(3)}` : '—';
    diff.push(`| ${s} | ${d((x) => x.top1)} | ${d((x) => x.subTop1)} | ${d((x) => x.i2t)} | ${d((x) => x.i2t10)} | ${d((x) => x.t2i)} | ${d((x) => x.t2i10)} | ${dl} |`);
  }
  const times = ['| stage | wall time (s) |', '|---|---|', ...timings.entries().map(([k, v]) => `| ${k} | ${v.toFixed(0)} |`)];
  const md = [
    `Emoji data: train on the google + twitter renderings, evaluate on ${r.samples} samples evenly spaced over the held-out facebook renderings (zero-shot with the emoji templates; retrieval with the real captions). Teacher: ${given ? `${given} (given)` : `mobileclip_tiny, ${teacherSteps} steps from random init (seed 1)`}. Student: \`mclip inherit --text-layers ${spec.textLayers} --text-width ${spec.textWidth} --text-heads ${spec.textHeads} --image-widths ${spec.imageWidths}\` of the teacher, or the same architecture from random init (seed 7). Both students: ${studentSteps}-step schedule (batch ${batch}, lr 1e-3, ${warmup} warm-up steps, cosine), seed 7 (same data order), evaluated every ${every} steps. One seed per arm. Parameters: trainable, training form; MACs: per image / per text at the full input, fused model (eval report). Train loss: mean CLIP loss of the last 20 logged training steps (training batches, not the eval split).`,
    '',
    ...table,
    '',
    'Inherited − scratch at equal steps (percentage points; loss in nats):',
    '',
    ...diff,
    '',
    `Wall time of each stage (this run and earlier resumed runs; the two students train in parallel, one process each):`,
    '',
    ...times,
    '',
    `This invocation: ${((Date.now() - wallStart) / 1000).toFixed(0)} s in all, of which ${studentWall.toFixed(0)} s for the two students.`,
  ].join('\n');
  publish(join(work, 'inherit.md'), md);
}

runBench(main);
