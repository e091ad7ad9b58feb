/**
 * `mclip distill`: TinyCLIP automatic weight inheritance, progressive (methods.md §3.5–§3.7), on both towers
 * jointly (`--towers text,image`, the default) or one. Every stage learns masks toward its target
 * sparsity, prunes the model physically and distils the smaller model; it leaves
 * `OUT/stage-K/model.safetensors` (written atomically) and one line in `OUT/stages.jsonl`. A stage whose model
 * is already there is skipped, so a stopped run continues from the last finished stage.
 *
 * Teacher embeddings come from a live teacher model (`--teacher`, a checkpoint, in eval mode) or, with
 * `--reinforced`, from the shards' stored teacher embeddings (`mclip reinforce`). The live teacher runs in
 * `--teacher-engine ort` (the default: the checkpoint's verified ONNX export in onnxruntime-node, cached by
 * checkpoint hash, src/eval/engine-ort.ts; tfjs instead, with the reason printed, when onnxruntime-node cannot
 * load or the model cannot be exported) or `tfjs` (the model itself, outside the gradient tape). Both give the
 * same L2-normalised row-major features (≤ 1e-4). A stage with teacher "previous" runs that model the same way.
 * An `.onnx` file is not accepted as `--teacher`: the ORT engine opens a checkpoint's per-tower export.
 * Sparsities are fractions of the initial model's prunable parameters of the masked towers (text: transformer
 * layers and RepMixer blocks; image: every MCi block; embeddings, stem, downsamplers and heads are not counted,
 * as in TinyCLIP). `--sparsity 0` is one stage of plain distillation (no masks): the baselines' student.
 *
 * Stages come from `--sparsity a,b,…` (each `--stage-steps` long, the original teacher) or from `--stages
 * FILE`: a JSON list of `{ "sparsity": s, "steps"?: n, "maskSteps"?: n, "teacher"?: "original" | "previous" }`.
 *
 * With `--sparsity 0`, the token flags (`--text-padding`, `--prune-layers/--keep`, `--merge-layers/--merge`)
 * fine-tune the student with those text-token reducers active on its text tower (gradients flow through
 * the kept and merged tokens; the teacher runs unreduced), so it learns to work with fewer tokens. The saved
 * model is the plain model; the flags are recorded in its metadata (`mclip.text_tokens`) and `mclip eval` /
 * `mclip embed` take the same flags to run it reduced. Masked stages refuse them: pruning changes the layers.
 *
 * The teacher's embedding width need not be the student's: affinity mimicking and MobileCLIP's KD compare
 * batch × batch similarity matrices, never features, so no projection is needed and none is refused.
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Argv } from 'yargs';
import { withOptions, type OptionTable } from '../options.js';
import * as tf from '../../base/tf.js';
import { MclipError } from '../../errors.js';
import type { CLIP } from '../../base/model/clip.js';
import { l2normalize } from '../../base/model/clip.js';
import { loadModel, saveModel } from '../../base/model/checkpoint.js';
import { ClipTokenizer, resolveVocabDir } from '../../base/tokenizer/index.js';
import { ImageTextLoop, ReinforcedLoop } from '../../base/train/data-loop.js';
import { preprocessFor } from '../../base/model/preprocess-table.js';
import type { PreprocessSpec } from '../../base/preprocess/spec.js';
import type { TeacherSpec } from '../../base/train/distill-loss.js';
import type { TrainBatch } from '../../base/train/loss-terms.js';
import { TINYCLIP_TEACHER_SCALE } from '../../distill/affinity.js';
import type { Tower } from '../../distill/masks/tower-gates.js';
import { defaultMaskLr, jointPrunableSize, runPruneStage, type PruneStepMetrics } from '../../distill/prune-stage.js';
import { ENGINES, type EngineName, type ImageTextEncoder } from '../../eval/engine.js';
import { openEngine } from '../../eval/engine-ort.js';
import { startBackend, type GlobalArgs } from '../run.js';
import { UsageError } from '../usage.js';
import { installTokenSettings, parseTokenArgs, textLayerCount, tokenFlags, tokensAsTrained, TOKEN_OPTIONS, type TokenArgs } from '../token-options.js';

export interface DistillArgs extends GlobalArgs, TokenArgs {
  teacher?: string;
  /** What runs the live teacher: 'ort' (default; tfjs with a printed reason when it cannot) or 'tfjs'. */
  teacherEngine?: string;
  init: string;
  data: string;
  split: string;
  vocab?: string;
  reinforced: boolean;
  sparsity?: string;
  stages?: string;
  towers: string;
  imageChannels: boolean;
  stageSteps: number;
  maskFraction: number;
  warmupFraction: number;
  batch: number;
  lr: number;
  form: string;
  distill: string;
  lambda: number;
  /** The teacher's inverse temperature in affinity mimicking: a positive number (TinyCLIP: 50) or 'learned' (the teacher's own logit scale). */
  teacherScale: string;
  seed: number;
  limit?: number;
  out: string;
}

/** `0.25,0.5,0.75` → increasing targets in (0, 1); or `0` alone: one stage of plain distillation. */
export function parseSparsities(v: string): number[] {
  const parts = v.split(',').map((s) => s.trim());
  const out = parts.map(Number);
  if (parts.length === 0 || parts.some((p) => p === '') || out.some((x) => !Number.isFinite(x))) throw new UsageError(`--sparsity: expected comma-separated numbers like 0.25,0.5, got '${v}'`);
  if (out.length === 1 && out[0] === 0) return out;
  for (const x of out) if (!(x > 0 && x < 1)) throw new UsageError(`--sparsity: every target must be in (0, 1) (or 0 alone: plain distillation), got ${x}`);
  for (let i = 1; i < out.length; i++) if (!(out[i] > out[i - 1])) throw new UsageError(`--sparsity: targets must increase from stage to stage, got ${out[i - 1]} then ${out[i]}`);
  return out;
}

/** `text,image` | `both` | `text` | `image` → the towers to mask. */
export function parseTowers(v: string): Tower[] {
  if (v === 'both') return ['text', 'image'];
  const parts = v.split(',').map((s) => s.trim());
  const ok = parts.every((p) => p === 'text' || p === 'image') && new Set(parts).size === parts.length && parts.length > 0;
  if (!ok) throw new UsageError(`--towers: expected text, image, both or text,image, got '${v}'`);
  return parts as Tower[];
}

/** One stage of a run. */
export interface StageSpec {
  sparsity: number;
  steps: number;
  maskSteps: number;
  /** The teacher of the stage: the original (`--teacher`) or the previous stage's model. */
  teacher: 'original' | 'previous';
}

/** A `--stages` file: a JSON list of stages; defaults from the flags. Throws a one-line error naming the file and the entry. */
export function parseStagesFile(path: string, text: string, defaults: { steps: number; maskFraction: number }): StageSpec[] {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`--stages ${path}: not JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  if (!Array.isArray(raw) || raw.length === 0) throw new UsageError(`--stages ${path}: expected a non-empty JSON list of stages`);
  const out = raw.map((e: unknown, i): StageSpec => {
    const at = `--stages ${path}: stage ${i + 1}`;
    if (typeof e !== 'object' || e === null || Array.isArray(e)) throw new UsageError(`${at}: expected an object like {"sparsity": 0.5}`);
    const o = e as Record<string, unknown>;
    for (const k of Object.keys(o)) if (!['sparsity', 'steps', 'maskSteps', 'teacher'].includes(k)) throw new UsageError(`${at}: unknown key '${k}' (sparsity, steps, maskSteps, teacher)`);
    const sp = o.sparsity;
    if (typeof sp !== 'number' || !(sp > 0 && sp < 1)) throw new UsageError(`${at}: sparsity must be a number in (0, 1), got ${JSON.stringify(sp)}`);
    const steps = o.steps ?? defaults.steps;
    if (typeof steps !== 'number' || !(Number.isInteger(steps) && steps >= 2)) throw new UsageError(`${at}: steps must be an integer ≥ 2, got ${JSON.stringify(steps)}`);
    const maskSteps = o.maskSteps ?? Math.max(1, Math.round(defaults.maskFraction * steps));
    if (typeof maskSteps !== 'number' || !(Number.isInteger(maskSteps) && maskSteps >= 1 && maskSteps <= steps)) throw new UsageError(`${at}: maskSteps must be an integer in [1, steps], got ${JSON.stringify(maskSteps)}`);
    const teacher = o.teacher ?? 'original';
    if (teacher !== 'original' && teacher !== 'previous') throw new UsageError(`${at}: teacher must be "original" or "previous", got ${JSON.stringify(teacher)}`);
    return { sparsity: sp, steps, maskSteps, teacher };
  });
  for (let i = 1; i < out.length; i++) if (!(out[i].sparsity > out[i - 1].sparsity)) throw new UsageError(`--stages ${path}: sparsities must increase from stage to stage, got ${out[i - 1].sparsity} then ${out[i].sparsity}`);
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
  if (!(a.lambda >= 0 && a.lambda <= 1)) throw new UsageError(`--lambda: expected a number in [0, 1], got ${a.lambda}`);
  if (a.teacherScale !== 'learned' && !(Number(a.teacherScale) > 0 && Number.isFinite(Number(a.teacherScale)))) throw new UsageError(`--teacher-scale: expected a positive number or 'learned', got '${a.teacherScale}'`);
  if (a.teacherScale !== String(TINYCLIP_TEACHER_SCALE) && a.distill === 'kd' && a.reinforced) throw new UsageError('--teacher-scale: with --distill kd --reinforced the stored teachers’ own logit scales are used');
  if ((a.sparsity == null) === (a.stages == null)) throw new UsageError('give the stages with either --sparsity a,b,… or --stages FILE');
  if (!a.reinforced && !a.teacher) throw new UsageError('--teacher is needed unless --reinforced (the shards’ stored teacher embeddings) is given');
  if (a.teacherEngine != null && !ENGINES.includes(a.teacherEngine as EngineName)) throw new UsageError(`--teacher-engine: expected one of ${ENGINES.join(', ')}, got '${a.teacherEngine}'`);
  parseTokenArgs(a, Number.MAX_SAFE_INTEGER); // the token flags' form (the layer range: once the student is loaded)
}

/** The token flags were given: refused unless every stage is plain distillation. */
function checkTokenStages(a: DistillArgs, stages: StageSpec[]): void {
  const given = [a.textPadding, a.pruneLayers, a.keep, a.mergeLayers, a.merge].some((v) => v !== undefined);
  if (given && stages.some((st) => st.sparsity > 0)) {
    throw new UsageError('--text-padding / --prune-layers / --merge-layers: only with --sparsity 0 (a fine-tune of a fixed model; masked stages change the layers the reducers name)');
  }
}

function samePreprocess(a: PreprocessSpec, b: PreprocessSpec): boolean {
  return a.interpolation === b.interpolation && a.mean.every((v, i) => v === b.mean[i]) && a.std.every((v, i) => v === b.std[i]);
}

function describePreprocess(p: PreprocessSpec): string {
  return `mean ${p.mean.join('/')}, std ${p.std.join('/')}, ${p.interpolation}`;
}

export type TeacherFeatures = Pick<TrainBatch, 'teacherImg' | 'teacherGt' | 'teacherSyn'>;

/** Normalised teacher features of a batch, row-major (computed outside any gradient tape): the tfjs engine. */
export function teacherFeatures(teacher: CLIP, b: TrainBatch): TeacherFeatures {
  return tf.tidy(() => ({
    teacherImg: l2normalize(teacher.encodeImage(b.images)).dataSync() as Float32Array,
    teacherGt: l2normalize(teacher.encodeText(b.gtTokens)).dataSync() as Float32Array,
    teacherSyn: b.synTokens ? (l2normalize(teacher.encodeText(b.synTokens)).dataSync() as Float32Array) : undefined,
  }));
}

/**
 * The same features from an engine (onnxruntime: the teacher's ONNX export): the batch's NHWC pixels and int32
 * token rows in, the engine's features L2-normalised as `teacherFeatures` does (`l2normalize`), row-major.
 */
export async function engineTeacherFeatures(engine: ImageTextEncoder, b: TrainBatch): Promise<TeacherFeatures> {
  const n = b.images.shape[0];
  const norm = (x: Float32Array): Float32Array => tf.tidy(() => l2normalize(tf.tensor2d(x, [n, x.length / n])).dataSync() as Float32Array);
  const img = await engine.encodeImages((await b.images.data()) as Float32Array, n, 'nhwc');
  const gt = await engine.encodeTexts((await b.gtTokens.data()) as Int32Array, b.gtTokens.shape[0]);
  const syn = b.synTokens ? await engine.encodeTexts((await b.synTokens.data()) as Int32Array, b.synTokens.shape[0]) : undefined;
  return { teacherImg: norm(img), teacherGt: norm(gt), teacherSyn: syn ? norm(syn) : undefined };
}

/** A live teacher: its fused tfjs model (eval mode) and the ORT engine that runs it instead, if any. */
export interface LiveTeacher {
  model: CLIP;
  engine: ImageTextEncoder | null;
  /** The engine line for stderr: `engine ort (…)`, `engine tfjs (…)` or `engine tfjs instead of ort: <reason>`. */
  line: string;
  /** True when ORT was asked for and tfjs runs instead. */
  fallback: boolean;
}

/** The teacher `model` (loaded from `checkpoint`) in `choice`; ORT falls back to tfjs with the reason in `line`. */
export async function openLiveTeacher(model: CLIP, checkpoint: string, choice: EngineName, tfjsDescription: string): Promise<LiveTeacher> {
  if (choice === 'tfjs') return { model, engine: null, line: `engine tfjs (${tfjsDescription})`, fallback: false };
  const opened = await openEngine('ort', model, { checkpoint, tfjsDescription });
  if (opened.engine.name === 'ort') return { model, engine: opened.engine, line: opened.line, fallback: false };
  await opened.engine.dispose();
  return { model, engine: null, line: opened.line, fallback: true };
}

/** The teacher features of `b` from `t`: synchronous in tfjs, a promise in ORT. */
export function liveTeacherFeatures(t: LiveTeacher, b: TrainBatch): TeacherFeatures | Promise<TeacherFeatures> {
  return t.engine ? engineTeacherFeatures(t.engine, b) : teacherFeatures(t.model, b);
}

export interface StageLine {
  stage: number;
  towers: Tower[];
  target: number;
  /** Sparsity TinyCLIP's deterministic masks would have given (no count offset). */
  uncalibrated: number;
  countShift: number;
  teacher: 'original' | 'previous';
  expected: number;
  reached: number;
  prunable: { before: number; after: number; initial: number };
  /** Prunable sizes per masked tower. */
  perTower: Partial<Record<Tower, { before: number; after: number }>>;
  params: number;
  steps: number;
  maskSteps: number;
  lastLoss: Record<string, number>;
  seconds: number;
}

export async function runDistill(args: DistillArgs): Promise<StageLine[]> {
  checkArgs(args);
  const towers = parseTowers(args.towers);
  const stages: StageSpec[] = args.stages
    ? parseStagesFile(args.stages, readStages(args.stages), { steps: args.stageSteps, maskFraction: args.maskFraction })
    : parseSparsities(args.sparsity!).map((sp) => ({ sparsity: sp, steps: args.stageSteps, maskSteps: sp === 0 ? 0 : Math.max(1, Math.round(args.maskFraction * args.stageSteps)), teacher: 'original' as const }));
  if (args.reinforced && stages.some((st) => st.teacher === 'previous')) throw new UsageError('--reinforced: the stored embeddings are the original teacher’s; a stage with teacher "previous" needs a live --teacher');
  checkTokenStages(args, stages);
  const engineChoice = (args.teacherEngine ?? 'ort') as EngineName;
  const backend = await startBackend(args, { gradients: true });
  const tfjsDescription = `tfjs ${backend.name}, ${backend.threads} thread${backend.threads === 1 ? '' : 's'}`;
  const tokenizer = ClipTokenizer.fromDir(resolveVocabDir(args.vocab));
  const { model: init } = await loadModel(args.init, {});
  let teacher: LiveTeacher | null = null;
  let stageTeacher: LiveTeacher | null = null;
  const lines: StageLine[] = [];
  let current: CLIP = init;
  try {
    if (init.cfg.text.vocabSize !== tokenizer.vocabSize) throw new MclipError(`${args.init}: text vocabulary ${init.cfg.text.vocabSize} ≠ the tokenizer's ${tokenizer.vocabSize} (--vocab)`);
    const tokens = parseTokenArgs(args, textLayerCount(init));
    const reduced = !tokensAsTrained(tokens);
    const initial = jointPrunableSize(init, towers);
    const size = init.cfg.image.imageSize;
    const preprocess = preprocessFor(init.cfg);
    const loadOpts = { seed: args.seed, limit: args.limit, preprocess };
    const loop = args.reinforced ? await ReinforcedLoop.load(args.data, args.split, size, loadOpts) : await ImageTextLoop.load(args.data, args.split, size, loadOpts);
    let teachers: TeacherSpec[];
    if (loop instanceof ReinforcedLoop) {
      teachers = loop.teachers;
    } else {
      if (/\.onnx$/i.test(args.teacher!)) throw new MclipError(`--teacher ${args.teacher}: an ONNX teacher is not supported by mclip distill (give the checkpoint; --teacher-engine ort runs its cached ONNX export)`);
      let tm: CLIP;
      try {
        tm = (await loadModel(args.teacher!, { fused: true })).model;
      } catch (e) {
        throw new MclipError(`--teacher ${args.teacher}: cannot be read as a model: ${e instanceof Error ? e.message : String(e)}`);
      }
      teacher = { model: tm, engine: null, line: '', fallback: false };
      tm.eval();
      if (tm.cfg.image.imageSize !== size) throw new MclipError(`--teacher ${args.teacher}: image size ${tm.cfg.image.imageSize}, the student's is ${size}`);
      if (!samePreprocess(preprocessFor(tm.cfg), preprocess)) throw new MclipError(`--teacher ${args.teacher}: its image preprocessing (${describePreprocess(preprocessFor(tm.cfg))}) is not the student's (${describePreprocess(preprocess)}); the teacher sees the student's batches, so they must match`);
      if (tm.cfg.text.vocabSize !== tokenizer.vocabSize) throw new MclipError(`--teacher ${args.teacher}: text vocabulary ${tm.cfg.text.vocabSize} ≠ the tokenizer's ${tokenizer.vocabSize}`);
      teachers = [{ dim: tm.cfg.embedDim, logitScale: TINYCLIP_TEACHER_SCALE }];
      teacher = await openLiveTeacher(tm, args.teacher!, engineChoice, tfjsDescription);
      if (!args.quiet || teacher.fallback) console.error(`mclip: distill: teacher ${args.teacher}: ${teacher.line}`);
    }
    if (!args.quiet) {
      const st0 = stages[0];
      const warm0 = Math.max(1, Math.round(args.warmupFraction * st0.maskSteps));
      console.error(
        `mclip: distill: ${stages.length} stage(s) to ${stages.map((t) => `${+(t.sparsity * 100).toFixed(4)}%`).join(' → ')} of ${initial} prunable parameters (${towers.join(' + ')}${towers.includes('image') ? (args.imageChannels ? ', image stage channels masked' : ', image heads and ConvFFNs masked, stage channels not (--image-channels)') : ''}); ` +
          `stage 1: ${st0.steps} steps, ${st0.maskSteps} of mask learning${args.stages ? '' : ` (--mask-fraction ${args.maskFraction})`}, target ramp ${warm0} steps (--warmup-fraction ${args.warmupFraction}), ` +
          `mask/multiplier lr ${st0.maskSteps > 0 ? defaultMaskLr(st0.maskSteps).toFixed(3) : '-'}, ${args.form} Lagrangian, pruned size calibrated to the target, ${args.distill === 'affinity' || !args.reinforced ? `${args.distill === 'affinity' ? 'affinity mimicking' : 'MobileCLIP KD'} (teacher scale ${args.teacherScale === 'learned' ? `learned: ${+stageTeacherScale('learned', teacher, teachers).toFixed(4)}` : args.teacherScale}${args.teacherScale === String(TINYCLIP_TEACHER_SCALE) ? ', TinyCLIP' : ''})` : 'MobileCLIP KD (the stored teachers’ logit scales)'}${args.lambda < 1 ? ` at λ ${args.lambda} beside the contrastive loss at ${+(1 - args.lambda).toFixed(6)}` : ' alone (λ 1, no contrastive term)'}, ` +
          `batch ${args.batch}, lr ${args.lr}; teacher: ${teacher ? `${args.teacher} (engine ${teacher.engine ? 'ort' : 'tfjs'})` : 'stored embeddings (--reinforced)'}` +
          (reduced ? `; the student's text tower trains with ${tokenFlags(tokens).join(' ')} (the teacher unreduced)` : ''),
      );
    }
    mkdirSync(args.out, { recursive: true });
    const jsonl = join(args.out, 'stages.jsonl');
    const done = existsSync(jsonl) ? readFileSync(jsonl, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as StageLine) : [];
    const ctx = init.cfg.text.contextLength;
    let live: LiveTeacher | null = teacher;
    const batchAt = (): TrainBatch | Promise<TrainBatch> => {
      const b = loop.next(args.batch, tokenizer, ctx);
      if (!live) return b;
      const f = liveTeacherFeatures(live, b);
      if (!(f instanceof Promise)) return { ...b, ...f };
      return f.then(
        (v) => ({ ...b, ...v }),
        (e: unknown) => {
          tf.dispose([b.images, b.gtTokens, ...(b.synTokens ? [b.synTokens] : [])]);
          throw e;
        },
      );
    };
    for (let k = 0; k < stages.length; k++) {
      const st = stages[k];
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
      await disposeLive(stageTeacher);
      stageTeacher = null;
      if (st.teacher === 'previous' && k > 0) {
        const prevFile = join(args.out, `stage-${k}`, 'model.safetensors');
        const pm = (await loadModel(prevFile, { fused: true })).model;
        pm.eval();
        try {
          stageTeacher = await openLiveTeacher(pm, prevFile, engineChoice, tfjsDescription);
        } catch (e) {
          pm.dispose();
          throw e;
        }
        if (!args.quiet || stageTeacher.fallback) console.error(`mclip: stage ${k + 1}: teacher ${prevFile}: ${stageTeacher.line}`);
        live = stageTeacher;
      } else {
        live = teacher;
      }
      // the teacher's inverse temperature: fixed, or the logit scale of the teacher this stage runs
      const scale = stageTeacherScale(args.teacherScale, live, teachers);
      const t0 = Date.now();
      let last: Record<string, number> = {};
      const warmup = Math.max(1, Math.round(args.warmupFraction * st.maskSteps));
      const every = Math.max(1, Math.floor(st.steps / 10));
      const tokenHooks = reduced ? installTokenSettings(current, tokens) : null;
      // one line per optimiser step (the stage restarts from its first step on a resume, so the file does too)
      const metricsFile = join(args.out, `stage-${k + 1}`, 'metrics.jsonl');
      mkdirSync(dirname(metricsFile), { recursive: true });
      writeFileSync(metricsFile, '');
      let r: Awaited<ReturnType<typeof runPruneStage>>;
      try {
        r = await runPruneStage(current, {
          towers,
          imageChannels: args.imageChannels,
          target: st.sparsity,
          reference: initial,
          steps: st.steps,
          maskSteps: st.maskSteps,
          sparsityWarmup: warmup,
          lr: args.lr,
          form: args.form === 'one-sided' ? 'one-sided' : 'two-sided',
          distill: args.distill === 'kd' ? 'kd' : 'affinity',
          lambda: args.lambda,
          teacherScale: args.distill === 'affinity' ? scale : undefined,
          // a live teacher's spec carries the same scale (MobileCLIP's KD reads it); stored teachers keep their own
          teachers: live ? teachers.map((t) => ({ ...t, logitScale: scale })) : teachers,
          batch: batchAt,
          seed: args.seed + k,
          onStep: (m) => {
            last = m.losses;
            appendFileSync(metricsFile, JSON.stringify(stepLine(k + 1, m)) + '\n');
            if (!args.quiet && (m.step % every === 0 || m.step === st.maskSteps)) {
              console.error(`mclip: stage ${k + 1} ${m.phase} step ${m.step}/${st.steps}: loss ${m.loss.toFixed(4)}${m.sparsity != null ? `, expected sparsity ${(m.sparsity * 100).toFixed(1)}% (target now ${((m.target ?? 0) * 100).toFixed(1)}%)` : ''}`);
            }
          },
        });
      } finally {
        tokenHooks?.remove();
      }
      mkdirSync(join(args.out, `stage-${k + 1}`), { recursive: true });
      saveModel(r.model, file, {
        'mclip.distill_stage': String(k + 1),
        'mclip.distill_target': String(st.sparsity),
        'mclip.distill_towers': towers.join(','),
        ...(reduced ? { 'mclip.text_tokens': tokenFlags(tokens).join(' ') } : {}),
      });
      const line: StageLine = {
        stage: k + 1,
        towers,
        target: st.sparsity,
        uncalibrated: r.uncalibrated,
        countShift: r.countShift,
        teacher: st.teacher,
        expected: r.expected,
        reached: r.reached,
        prunable: { ...r.prunable, initial },
        perTower: r.towers,
        params: r.model.numParams(),
        steps: st.steps,
        maskSteps: st.maskSteps,
        lastLoss: last,
        seconds: (Date.now() - t0) / 1000,
      };
      appendFileSync(jsonl, JSON.stringify(line) + '\n');
      lines.push(line);
      if (current !== init && current !== r.model) current.dispose();
      current = r.model;
      console.log(`stage ${k + 1}: target ${(st.sparsity * 100).toFixed(1)}%, reached ${(r.reached * 100).toFixed(1)}% (${r.prunable.after} of ${initial} prunable parameters; TinyCLIP's masks alone: ${(r.uncalibrated * 100).toFixed(1)}%), ${line.params} parameters → ${file}`);
    }
    return lines;
  } finally {
    if (current !== init) current.dispose();
    init.dispose();
    await disposeLive(teacher);
    await disposeLive(stageTeacher);
  }
}

/** The teacher inverse temperature of a stage: `--teacher-scale` as a number, or with 'learned' the running teacher's own logit scale (the live model's, else stored teacher 0's). */
function stageTeacherScale(flag: string, live: LiveTeacher | null, teachers: readonly TeacherSpec[]): number {
  if (flag !== 'learned') return Number(flag);
  if (live) return tf.tidy(() => live.model.logitScaleExp().dataSync()[0]);
  return teachers[0].logitScale;
}

/** A line of `stage-K/metrics.jsonl`: the step's losses, learning rates, gradient norm before clipping (null when off), and the sparsities of mask learning. */
export interface StepLine {
  stage: number;
  /** 1-based step within the stage. */
  step: number;
  phase: 'masks' | 'dense';
  loss: number;
  losses: Record<string, number>;
  lr: number;
  groupLr?: Record<string, number>;
  gradNorm: number | null;
  logitScale: number;
  /** Expected sparsity of the reference size and the ramped target (mask learning only). */
  sparsity?: number;
  target?: number;
  samplesPerSec: number;
  time: string;
}

function stepLine(stage: number, m: PruneStepMetrics): StepLine {
  return {
    stage,
    step: m.step,
    phase: m.phase,
    loss: m.loss,
    losses: m.losses,
    lr: m.lr,
    ...(m.groupLr ? { groupLr: m.groupLr } : {}),
    gradNorm: Number.isFinite(m.gradNorm) ? m.gradNorm : null,
    logitScale: m.logitScale,
    ...(m.sparsity != null ? { sparsity: m.sparsity, target: m.target } : {}),
    samplesPerSec: m.samplesPerSec,
    time: new Date().toISOString(),
  };
}

async function disposeLive(t: LiveTeacher | null): Promise<void> {
  if (!t) return;
  try {
    await t.engine?.dispose();
  } finally {
    t.model.dispose();
  }
}

function readStages(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new UsageError(`--stages ${path}: cannot be read (${e instanceof Error ? e.message : String(e)})`);
  }
}

export const DISTILL_OPTIONS = {
  teacher: { type: 'string', describe: 'teacher checkpoint (run live, see --teacher-engine); not needed with --reinforced' },
  'teacher-engine': { type: 'string', default: 'ort', choices: ENGINES, describe: "what runs the live teacher (ort | tfjs): ort = the checkpoint's verified ONNX export in onnxruntime-node (cached by checkpoint hash in $MCLIP_CACHE_DIR/onnx), falling back to tfjs with the reason; tfjs = the tfjs model" },
  init: { type: 'string', demandOption: true, describe: 'student to prune (usually the teacher itself)' },
  data: { type: 'string', demandOption: true, describe: 'shards folder (mclip data …, or mclip reinforce output with --reinforced)' },
  split: { type: 'string', default: 'train' },
  vocab: { type: 'string', describe: 'vocabulary folder (default $MCLIP_VOCAB)' },
  reinforced: { type: 'boolean', default: false, describe: 'use the shards’ stored teacher embeddings instead of a live teacher' },
  sparsity: { type: 'string', describe: 'target sparsity of each stage, increasing, e.g. 0.25,0.5,0.75 (fractions of the initial prunable parameters of the masked towers); 0: plain distillation, no masks' },
  stages: { type: 'string', describe: 'JSON file of stages instead of --sparsity: [{"sparsity": 0.25, "steps": 300, "maskSteps": 180, "teacher": "original"|"previous"}, …]' },
  towers: { type: 'string', default: 'both', describe: 'towers to mask: both (text,image), text or image; the others train along unmasked' },
  'image-channels': { type: 'boolean', default: false, describe: 'also mask the MCi stage channels (coarse, coupled through the PatchEmbeds); default: heads and ConvFFN hidden channels only' },
  'stage-steps': { type: 'number', default: 300, describe: 'steps per stage' },
  'mask-fraction': { type: 'number', default: 0.6, describe: 'fraction of a stage spent learning masks (--prune-step = fraction × stage steps)' },
  'warmup-fraction': { type: 'number', default: 0.5, describe: 'fraction of the mask steps over which the target ramps up (--sparsity-warmup)' },
  batch: { type: 'number', default: 32 },
  lr: { type: 'number', default: 1e-4, describe: 'peak lr of the model (TinyCLIP: 1e-4)' },
  form: { type: 'string', default: 'two-sided', choices: ['two-sided', 'one-sided'], describe: 'sparsity Lagrangian: two-sided (paper; default, settles on short stages) or one-sided (TinyCLIP code)' },
  distill: { type: 'string', default: 'affinity', choices: ['affinity', 'kd'], describe: 'affinity (TinyCLIP L_AM) or kd (MobileCLIP L_KD)' },
  'teacher-scale': {
    type: 'string',
    default: String(TINYCLIP_TEACHER_SCALE),
    describe: "the teacher's inverse temperature in affinity mimicking (and a live teacher's in KD): a number (TinyCLIP: 50) or 'learned' (the teacher's own logit scale; stored teacher 0's with --reinforced)",
  },
  lambda: {
    type: 'number',
    default: 1,
    describe: 'distillation share λ of the task loss: L = (1 − λ)·L_CLIP + λ·L_distill (+ L_lag while masks are learnt); 1 = TinyCLIP (no contrastive term)',
  },
  seed: { type: 'number', default: 0 },
  limit: { type: 'number', describe: 'use only the first N samples of the split' },
  out: { type: 'string', demandOption: true, describe: 'output folder: stage-K/model.safetensors, stage-K/metrics.jsonl (every step: losses, lr, gradient norm) and stages.jsonl' },
  // with --sparsity 0: fine-tune the student with text-token reducers active (the teacher unreduced)
  ...TOKEN_OPTIONS,
} as const satisfies OptionTable;

export function distillCommand(y: Argv): Argv {
  return y.command(
    'distill',
    'TinyCLIP automatic weight inheritance: learn masks toward each target sparsity, prune, distil (progressive stages; both towers)',
    (a) =>
      withOptions(a, DISTILL_OPTIONS),
    (args) =>
      runDistill({
        teacher: args.teacher,
        teacherEngine: args.teacherEngine,
        init: args.init,
        data: args.data,
        split: args.split,
        vocab: args.vocab,
        reinforced: args.reinforced,
        sparsity: args.sparsity,
        stages: args.stages,
        towers: args.towers,
        imageChannels: args.imageChannels,
        stageSteps: args.stageSteps,
        maskFraction: args.maskFraction,
        warmupFraction: args.warmupFraction,
        batch: args.batch,
        lr: args.lr,
        form: args.form,
        distill: args.distill,
        lambda: args.lambda,
        teacherScale: args.teacherScale,
        seed: args.seed,
        limit: args.limit,
        out: args.out,
        textPadding: args.textPadding,
        pruneLayers: args.pruneLayers,
        keep: args.keep,
        mergeLayers: args.mergeLayers,
        merge: args.merge,
        backend: typeof args.backend === 'string' ? args.backend : undefined,
        quiet: args.quiet === true,
        debug: args.debug === true,
      }).then(() => undefined),
  );
}
