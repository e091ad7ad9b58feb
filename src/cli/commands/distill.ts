/**
 * `mclip distill`: TinyCLIP automatic weight inheritance, progressive (methods.md §3.5–§3.7) — for now on
 * the text tower (the image tower trains along, unmasked). Every stage learns masks toward its target
 * sparsity, prunes the model physically and distils the smaller model; it leaves
 * `OUT/stage-K/model.safetensors` (written atomically) and one line in `OUT/stages.jsonl`. A stage whose model
 * is already there is skipped, so a stopped run continues from the last finished stage.
 *
 * Teacher embeddings come from a live teacher model (`--teacher`, run in tfjs in eval mode outside the
 * gradient tape) or, with `--reinforced`, from the shards' stored teacher embeddings (`mclip reinforce`).
 * Sparsities are fractions of the initial model's prunable text parameters (transformer layers and
 * RepMixer blocks; the token table is not counted, as in TinyCLIP).
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Argv } from 'yargs';
import * as tf from '../../base/tf.js';
import { MclipError } from '../../errors.js';
import type { CLIP } from '../../base/model/clip.js';
import { l2normalize } from '../../base/model/clip.js';
import { loadModel, saveModel } from '../../base/model/checkpoint.js';
import { ClipTokenizer, resolveVocabDir } from '../../base/tokenizer/index.js';
import { ImageTextLoop, ReinforcedLoop } from '../../base/train/data-loop.js';
import type { TeacherSpec } from '../../base/train/distill-loss.js';
import type { TrainBatch } from '../../base/train/loss-terms.js';
import { TINYCLIP_TEACHER_SCALE } from '../../distill/affinity.js';
import { textPrunableSize } from '../../distill/masks/text-gates.js';
import { defaultMaskLr, runTextPruneStage } from '../../distill/text-prune-stage.js';
import { startBackend, type GlobalArgs } from '../run.js';
import { UsageError } from '../usage.js';

export interface DistillArgs extends GlobalArgs {
  teacher?: string;
  init: string;
  data: string;
  split: string;
  vocab?: string;
  reinforced: boolean;
  sparsity: string;
  stageSteps: number;
  maskFraction: number;
  warmupFraction: number;
  batch: number;
  lr: number;
  form: string;
  distill: string;
  seed: number;
  limit?: number;
  out: string;
}

/** `0.25,0.5,0.75` → increasing targets in [0, 1). */
export function parseSparsities(v: string): number[] {
  const parts = v.split(',').map((s) => s.trim());
  const out = parts.map(Number);
  if (parts.length === 0 || parts.some((p) => p === '') || out.some((x) => !Number.isFinite(x))) throw new UsageError(`--sparsity: expected comma-separated numbers like 0.25,0.5, got '${v}'`);
  for (const x of out) if (!(x > 0 && x < 1)) throw new UsageError(`--sparsity: every target must be in (0, 1), got ${x}`);
  for (let i = 1; i < out.length; i++) if (!(out[i] > out[i - 1])) throw new UsageError(`--sparsity: targets must increase from stage to stage, got ${out[i - 1]} then ${out[i]}`);
  return out;
}

function checkArgs(a: DistillArgs): void {
  if (!(Number.isInteger(a.stageSteps) && a.stageSteps >= 2)) throw new UsageError(`--stage-steps: expected an integer ≥ 2, got ${a.stageSteps}`);
  if (!(a.maskFraction > 0 && a.maskFraction <= 1)) throw new UsageError(`--mask-fraction: expected a number in (0, 1], got ${a.maskFraction}`);
  if (!(a.warmupFraction > 0 && a.warmupFraction <= 1)) throw new UsageError(`--warmup-fraction: expected a number in (0, 1], got ${a.warmupFraction}`);
  if (!(Number.isInteger(a.batch) && a.batch >= 2)) throw new UsageError(`--batch: expected an integer ≥ 2, got ${a.batch}`);
  if (!(a.lr > 0)) throw new UsageError(`--lr: expected a positive number, got ${a.lr}`);
  if (a.form !== 'one-sided' && a.form !== 'two-sided') throw new UsageError(`--form: expected one-sided or two-sided, got '${a.form}'`);
  if (a.distill !== 'affinity' && a.distill !== 'kd') throw new UsageError(`--distill: expected affinity or kd, got '${a.distill}'`);
  if (!a.reinforced && !a.teacher) throw new UsageError('--teacher is needed unless --reinforced (the shards’ stored teacher embeddings) is given');
}

/** Normalised teacher features of a batch, row-major (computed outside any gradient tape). */
function teacherFeatures(teacher: CLIP, b: TrainBatch): Pick<TrainBatch, 'teacherImg' | 'teacherGt' | 'teacherSyn'> {
  return tf.tidy(() => ({
    teacherImg: l2normalize(teacher.encodeImage(b.images)).dataSync() as Float32Array,
    teacherGt: l2normalize(teacher.encodeText(b.gtTokens)).dataSync() as Float32Array,
    teacherSyn: b.synTokens ? (l2normalize(teacher.encodeText(b.synTokens)).dataSync() as Float32Array) : undefined,
  }));
}

export interface StageLine {
  stage: number;
  target: number;
  expected: number;
  reached: number;
  prunable: { before: number; after: number; initial: number };
  params: number;
  steps: number;
  maskSteps: number;
  lastLoss: Record<string, number>;
  seconds: number;
}

export async function runDistill(args: DistillArgs): Promise<StageLine[]> {
  checkArgs(args);
  const targets = parseSparsities(args.sparsity);
  await startBackend(args, { gradients: true });
  const tokenizer = ClipTokenizer.fromDir(resolveVocabDir(args.vocab));
  const { model: init } = await loadModel(args.init, {});
  let teacher: CLIP | null = null;
  const lines: StageLine[] = [];
  let current: CLIP = init;
  try {
    if (init.cfg.text.vocabSize !== tokenizer.vocabSize) throw new MclipError(`${args.init}: text vocabulary ${init.cfg.text.vocabSize} ≠ the tokenizer's ${tokenizer.vocabSize} (--vocab)`);
    const initial = textPrunableSize(init);
    const size = init.cfg.image.imageSize;
    const loadOpts = { seed: args.seed, limit: args.limit };
    const loop = args.reinforced ? await ReinforcedLoop.load(args.data, args.split, size, loadOpts) : await ImageTextLoop.load(args.data, args.split, size, loadOpts);
    let teachers: TeacherSpec[];
    if (loop instanceof ReinforcedLoop) {
      teachers = loop.teachers;
    } else {
      try {
        teacher = (await loadModel(args.teacher!, { fused: true })).model;
      } catch (e) {
        throw new MclipError(`--teacher ${args.teacher}: cannot be read as a model: ${e instanceof Error ? e.message : String(e)}`);
      }
      teacher.eval();
      if (teacher.cfg.image.imageSize !== size) throw new MclipError(`--teacher ${args.teacher}: image size ${teacher.cfg.image.imageSize}, the student's is ${size}`);
      if (teacher.cfg.text.vocabSize !== tokenizer.vocabSize) throw new MclipError(`--teacher ${args.teacher}: text vocabulary ${teacher.cfg.text.vocabSize} ≠ the tokenizer's ${tokenizer.vocabSize}`);
      teachers = [{ dim: teacher.cfg.embedDim, logitScale: TINYCLIP_TEACHER_SCALE }];
    }
    const maskSteps = Math.max(1, Math.round(args.maskFraction * args.stageSteps));
    const warmup = Math.max(1, Math.round(args.warmupFraction * maskSteps));
    if (!args.quiet) {
      console.error(
        `mclip: distill: ${targets.length} stage(s) to ${targets.map((t) => `${t * 100}%`).join(' → ')} of ${initial} prunable text parameters; ` +
          `${args.stageSteps} steps a stage: ${maskSteps} of mask learning (--mask-fraction ${args.maskFraction}), target ramp ${warmup} steps (--warmup-fraction ${args.warmupFraction}), ` +
          `mask/multiplier lr ${defaultMaskLr(maskSteps).toFixed(3)}, ${args.form} Lagrangian, ${args.distill === 'affinity' ? `affinity mimicking (teacher scale ${TINYCLIP_TEACHER_SCALE})` : 'MobileCLIP KD'}, ` +
          `batch ${args.batch}, lr ${args.lr}; teacher: ${teacher ? args.teacher : 'stored embeddings (--reinforced)'}`,
      );
    }
    mkdirSync(args.out, { recursive: true });
    const jsonl = join(args.out, 'stages.jsonl');
    const done = existsSync(jsonl) ? readFileSync(jsonl, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as StageLine) : [];
    const ctx = init.cfg.text.contextLength;
    const batchAt = () => {
      const b = loop.next(args.batch, tokenizer, ctx);
      return teacher ? { ...b, ...teacherFeatures(teacher, b) } : b;
    };
    for (let k = 0; k < targets.length; k++) {
      const file = join(args.out, `stage-${k + 1}`, 'model.safetensors');
      const prev = done.find((l) => l.stage === k + 1);
      if (existsSync(file) && prev) {
        const next = (await loadModel(file, {})).model;
        if (current !== init) current.dispose();
        current = next;
        lines.push(prev);
        if (!args.quiet) console.error(`mclip: stage ${k + 1}: ${file} exists, skipped (reached ${(prev.reached * 100).toFixed(1)}%)`);
        continue;
      }
      const t0 = Date.now();
      let last: Record<string, number> = {};
      const r = runTextPruneStage(current, {
        target: targets[k],
        reference: initial,
        steps: args.stageSteps,
        maskSteps,
        sparsityWarmup: warmup,
        lr: args.lr,
        form: args.form === 'one-sided' ? 'one-sided' : 'two-sided',
        distill: args.distill === 'kd' ? 'kd' : 'affinity',
        teachers,
        batch: batchAt,
        seed: args.seed + k,
        onStep: (m) => {
          last = m.losses;
          if (!args.quiet && (m.step % Math.max(1, Math.floor(args.stageSteps / 10)) === 0 || m.step === maskSteps)) {
            console.error(`mclip: stage ${k + 1} ${m.phase} step ${m.step}: loss ${m.loss.toFixed(4)}${m.sparsity != null ? `, expected sparsity ${(m.sparsity * 100).toFixed(1)}% (target now ${((m.target ?? 0) * 100).toFixed(1)}%)` : ''}`);
          }
        },
      });
      mkdirSync(join(args.out, `stage-${k + 1}`), { recursive: true });
      saveModel(r.model, file, { 'mclip.distill_stage': String(k + 1), 'mclip.distill_target': String(targets[k]) });
      const line: StageLine = {
        stage: k + 1,
        target: targets[k],
        expected: r.expected,
        reached: r.reached,
        prunable: { ...r.prunable, initial },
        params: r.model.numParams(),
        steps: args.stageSteps,
        maskSteps,
        lastLoss: last,
        seconds: (Date.now() - t0) / 1000,
      };
      appendFileSync(jsonl, JSON.stringify(line) + '\n');
      lines.push(line);
      if (current !== init) current.dispose();
      current = r.model;
      console.log(`stage ${k + 1}: target ${(targets[k] * 100).toFixed(1)}%, reached ${(r.reached * 100).toFixed(1)}% (${r.prunable.after} of ${initial} prunable text parameters), ${line.params} parameters → ${file}`);
    }
    return lines;
  } finally {
    if (current !== init) current.dispose();
    init.dispose();
    teacher?.dispose();
  }
}

export function distillCommand(y: Argv): Argv {
  return y.command(
    'distill',
    'TinyCLIP automatic weight inheritance: learn masks toward each target sparsity, prune, distil (progressive stages; text tower)',
    (a) =>
      a
        .option('teacher', { type: 'string', describe: 'teacher checkpoint (run live in tfjs); not needed with --reinforced' })
        .option('init', { type: 'string', demandOption: true, describe: 'student to prune (usually the teacher itself)' })
        .option('data', { type: 'string', demandOption: true, describe: 'shards folder (mclip data …, or mclip reinforce output with --reinforced)' })
        .option('split', { type: 'string', default: 'train' })
        .option('vocab', { type: 'string', describe: 'vocabulary folder (default $MCLIP_VOCAB)' })
        .option('reinforced', { type: 'boolean', default: false, describe: 'use the shards’ stored teacher embeddings instead of a live teacher' })
        .option('sparsity', { type: 'string', demandOption: true, describe: 'target sparsity of each stage, increasing, e.g. 0.25,0.5,0.75 (fractions of the initial prunable text parameters)' })
        .option('stage-steps', { type: 'number', default: 300, describe: 'steps per stage' })
        .option('mask-fraction', { type: 'number', default: 0.6, describe: 'fraction of a stage spent learning masks (--prune-step = fraction × stage steps)' })
        .option('warmup-fraction', { type: 'number', default: 0.5, describe: 'fraction of the mask steps over which the target ramps up (--sparsity-warmup)' })
        .option('batch', { type: 'number', default: 32 })
        .option('lr', { type: 'number', default: 1e-4, describe: 'peak lr of the model (TinyCLIP: 1e-4)' })
        .option('form', { type: 'string', default: 'two-sided', describe: 'sparsity Lagrangian: two-sided (paper; default, settles on short stages) or one-sided (TinyCLIP code)' })
        .option('distill', { type: 'string', default: 'affinity', describe: 'affinity (TinyCLIP L_AM) or kd (MobileCLIP L_KD)' })
        .option('seed', { type: 'number', default: 0 })
        .option('limit', { type: 'number', describe: 'use only the first N samples of the split' })
        .option('out', { type: 'string', demandOption: true, describe: 'output folder: stage-K/model.safetensors and stages.jsonl' }),
    (args) =>
      runDistill({
        teacher: args.teacher,
        init: args.init,
        data: args.data,
        split: args.split,
        vocab: args.vocab,
        reinforced: args.reinforced,
        sparsity: args.sparsity,
        stageSteps: args.stageSteps,
        maskFraction: args.maskFraction,
        warmupFraction: args.warmupFraction,
        batch: args.batch,
        lr: args.lr,
        form: args.form,
        distill: args.distill,
        seed: args.seed,
        limit: args.limit,
        out: args.out,
        backend: typeof args.backend === 'string' ? args.backend : undefined,
        quiet: args.quiet === true,
        debug: args.debug === true,
      }).then(() => undefined),
  );
}
