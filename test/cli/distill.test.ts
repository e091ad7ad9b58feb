/**
 * `mclip distill`: progressive TinyCLIP stages on both towers from the command line — a micro student
 * and teacher, two stages; every stage leaves stage-K/model.safetensors (a smaller model that loads with no
 * config) and a stages.jsonl line, each within ±2 % of its target; a rerun skips finished stages; a stages
 * file with a previous-stage teacher, plain distillation (`--sparsity 0`); bad input gives one-line errors.
 * The live teacher runs in onnxruntime (`--teacher-engine ort`, the default) or tfjs, with the same features.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { ClipTokenizer } from '../../src/base/tokenizer/index.js';
import { ImageTextLoop } from '../../src/base/train/data-loop.js';
import { CLIP } from '../../src/base/model/clip.js';
import { loadModel, saveModel } from '../../src/base/model/checkpoint.js';
import { engineTeacherFeatures, openLiveTeacher, parseSparsities, parseTowers, teacherFeatures, type StageLine, type StepLine } from '../../src/cli/commands/distill.js';
import { microConfig } from '../micro-config.js';
import { buildColorDataset, each, writeColorVocab, type Rgb } from './color-data.js';
import { expectOneLineError, show, tempDir } from './helpers.js';
import { runMain } from './in-process.js';

const COLORS: Record<string, Rgb> = { red: [220, 30, 30], green: [30, 200, 40], blue: [30, 40, 220], gray: [128, 128, 128] };

describe('mclip distill', () => {
  const tmp = tempDir('mclip-distill-');
  const dir = tmp.dir;
  afterAll(() => tmp.cleanup());
  beforeAll(async () => {
    await initBackend({ backend: 'wasm', quiet: true });
    await buildColorDataset(join(dir, 'data'), {
      split: 'train', colors: each(COLORS, 4), size: 32, samplesPerShard: 8,
      shade: ([r, g, b], i) => [r, g - 5 * i, b], captions: (name) => [name, `the color ${name}`],
    });
    const vocabSize = writeColorVocab(join(dir, 'vocab'), Object.keys(COLORS).flatMap((c) => [`a ${c} square`, `the color ${c}`, c]));
    const cfg = microConfig();
    cfg.text.vocabSize = vocabSize;
    const m = new CLIP(cfg, { seed: 3 });
    saveModel(m, join(dir, 'student.safetensors'));
    m.dispose();
  });
  const common = () => ['distill', '--teacher', join(dir, 'student.safetensors'), '--init', join(dir, 'student.safetensors'), '--data', join(dir, 'data'), '--vocab', join(dir, 'vocab'), '--batch', '4'];

  test('two stages leave smaller models and a stages.jsonl line each; a rerun skips them', async () => {
    const out = join(dir, 'out');
    const r = await runMain([...common(), '--sparsity', '0.25,0.5', '--stage-steps', '10', '--out', out]);
    expect(r.status, show(r)).toBe(0);
    const lines = readFileSync(join(out, 'stages.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as StageLine);
    expect(lines.map((l) => [l.stage, l.target])).toEqual([[1, 0.25], [2, 0.5]]);
    for (const l of lines) {
      expect(Math.abs(l.reached - l.target)).toBeLessThanOrEqual(0.02);
      expect(l.reached).toBeCloseTo(1 - l.prunable.after / l.prunable.initial, 10);
      expect(l.towers).toEqual(['text', 'image']);
      expect(l.perTower.text!.after + l.perTower.image!.after).toBe(l.prunable.after);
    }
    expect(lines[1].reached).toBeGreaterThan(lines[0].reached);
    expect(lines[1].params).toBeLessThan(lines[0].params);
    // every stage logs each optimiser step: 6 of mask learning (with the sparsities), then 4 dense ones
    const metrics = (k: number) => readFileSync(join(out, `stage-${k}`, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as StepLine);
    for (const k of [1, 2]) {
      const m = metrics(k);
      expect(m.map((x) => [x.stage, x.step, x.phase])).toEqual(Array.from({ length: 10 }, (_, i) => [k, i + 1, i < 6 ? 'masks' : 'dense']));
      for (const x of m) {
        expect(x.gradNorm).toBeGreaterThan(0);
        expect(Number.isFinite(x.loss)).toBe(true);
        expect(x.sparsity != null).toBe(x.phase === 'masks');
        expect(Object.keys(x.losses)).not.toContain('contrastive'); // the default λ 1: TinyCLIP's L_AM (+ L_lag), no contrastive term
      }
      expect(m[5].target).toBeCloseTo(lines[k - 1].target, 10);
      expect(m[9].losses).toEqual(lines[k - 1].lastLoss);
    }
    const logged = readFileSync(join(out, 'stage-1', 'metrics.jsonl'), 'utf8');
    // the defaults are printed at the start
    expect(r.stderr).toMatch(/stage 1: 10 steps, 6 of mask learning \(--mask-fraction 0\.6\), target ramp 3 steps/);
    const { model } = await loadModel(join(out, 'stage-2', 'model.safetensors'), {});
    expect(model.numParams()).toBe(lines[1].params);
    model.dispose();
    const again = await runMain([...common(), '--sparsity', '0.25,0.5', '--stage-steps', '10', '--out', out]);
    expect(again.status, show(again)).toBe(0);
    expect(again.stderr).toMatch(/stage 1: .* exists, skipped/);
    expect(again.stderr).toMatch(/stage 2: .* exists, skipped/);
    expect(readFileSync(join(out, 'stages.jsonl'), 'utf8').trim().split('\n')).toHaveLength(2);
    expect(readFileSync(join(out, 'stage-1', 'metrics.jsonl'), 'utf8')).toBe(logged);
  });

  test('a stages file (teacher: previous) prunes the text tower only; --sparsity 0 distils in place', async () => {
    const file = join(dir, 'stages.json');
    writeFileSync(file, JSON.stringify([{ sparsity: 0.3, steps: 6, maskSteps: 4 }, { sparsity: 0.4, steps: 4, maskSteps: 3, teacher: 'previous' }]));
    const out = join(dir, 'out-file');
    const r = await runMain([...common(), '--stages', file, '--towers', 'text', '--out', out]);
    expect(r.status, show(r)).toBe(0);
    // the previous stage's model as teacher runs in the same engine (its own cached export)
    expect(r.stderr).toMatch(/^mclip: stage 2: teacher .*stage-1\/model\.safetensors: engine ort \(onnxruntime-node .*onnx\/mobileclip_tiny_micro_pruned-[0-9a-f]{24}\)$/m);
    const lines = readFileSync(join(out, 'stages.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as StageLine);
    expect(lines.map((l) => [l.target, l.steps, l.maskSteps, l.teacher, l.towers])).toEqual([[0.3, 6, 4, 'original', ['text']], [0.4, 4, 3, 'previous', ['text']]]);
    for (const l of lines) expect(Math.abs(l.reached - l.target)).toBeLessThanOrEqual(0.02);
    const student = (await loadModel(join(dir, 'student.safetensors'), {})).model;
    const pruned = (await loadModel(join(out, 'stage-2', 'model.safetensors'), {})).model;
    expect(pruned.imageEncoder.numParams()).toBe(student.imageEncoder.numParams());
    expect(pruned.textEncoder.numParams()).toBeLessThan(student.textEncoder.numParams());
    const dense = join(dir, 'out-dense');
    const d = await runMain([...common(), '--sparsity', '0', '--stage-steps', '2', '--out', dense]);
    expect(d.status, show(d)).toBe(0);
    const dl = JSON.parse(readFileSync(join(dense, 'stages.jsonl'), 'utf8').trim()) as StageLine;
    expect([dl.target, dl.reached, dl.maskSteps, dl.params]).toEqual([0, 0, 0, student.numParams()]);
    student.dispose();
    pruned.dispose();
  });

  test('--teacher-engine ort and tfjs: one short stage each from the same seed succeeds, the engine printed at the start', async () => {
    const run = async (engine: string) => {
      const out = join(dir, `out-engine-${engine}`);
      const t0 = Date.now();
      const r = await runMain([...common(), '--sparsity', '0.25', '--stage-steps', '4', '--teacher-engine', engine, '--out', out]);
      expect(r.status, show(r)).toBe(0);
      const line = JSON.parse(readFileSync(join(out, 'stages.jsonl'), 'utf8').trim()) as StageLine;
      return { r, line, seconds: (Date.now() - t0) / 1000 };
    };
    const o = await run('ort');
    const t = await run('tfjs');
    expect(o.r.stderr).toMatch(/^mclip: distill: teacher .*student\.safetensors: engine ort \(onnxruntime-node [\d.]+ CPU, 2 threads; (exported, verified .* and cached in|cached export) .*onnx\/mobileclip_tiny_micro-[0-9a-f]{24}\)$/m);
    expect(o.r.stderr).toMatch(/; teacher: .*student\.safetensors \(engine ort\)$/m);
    expect(t.r.stderr).toMatch(/^mclip: distill: teacher .*student\.safetensors: engine tfjs \(tfjs wasm, \d+ threads?\)$/m);
    expect(t.r.stderr).toMatch(/; teacher: .*student\.safetensors \(engine tfjs\)$/m);
    for (const { line } of [o, t]) expect(Math.abs(line.reached - 0.25)).toBeLessThanOrEqual(0.02);
    // the same seed and teacher features within 1e-4: the same pruned size, nearly the same losses
    expect(o.line.params).toBe(t.line.params);
    const d = Math.max(...Object.keys(t.line.lastLoss).map((k) => Math.abs(o.line.lastLoss[k] - t.line.lastLoss[k])));
    console.log(`ort stage ${o.seconds.toFixed(1)} s, tfjs stage ${t.seconds.toFixed(1)} s; last losses ${JSON.stringify(o.line.lastLoss)} vs ${JSON.stringify(t.line.lastLoss)} (max |Δ| ${d.toExponential(1)})`);
    expect(d).toBeLessThan(1e-3);
  });

  test('--lambda 0.5 mixes the contrastive loss into both phases (logged each step, printed at the start); a λ outside [0, 1] is a usage error', async () => {
    const out = join(dir, 'out-lambda');
    const r = await runMain([...common(), '--sparsity', '0.25', '--stage-steps', '5', '--lambda', '0.5', '--out', out]);
    expect(r.status, show(r)).toBe(0);
    expect(r.stderr).toMatch(/affinity mimicking \(teacher scale 50, TinyCLIP\) at λ 0\.5 beside the contrastive loss at 0\.5, /);
    const m = readFileSync(join(out, 'stage-1', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as StepLine);
    expect(m.map((x) => x.phase)).toEqual(['masks', 'masks', 'masks', 'dense', 'dense']);
    for (const x of m) {
      expect(Object.keys(x.losses).sort(), `step ${x.step}`).toEqual(x.phase === 'masks' ? ['affinity', 'contrastive', 'sparsity'] : ['affinity', 'contrastive']);
      expect(x.losses.contrastive).toBeGreaterThan(0);
    }
    for (const bad of ['1.5', '-0.1']) expectOneLineError(expect, await runMain([...common(), '--sparsity', '0.25', '--lambda', bad, '--out', join(dir, 'bad-lambda')]), new RegExp(`--lambda: expected a number in \\[0, 1\\], got ${bad}`), 2);
    expect(existsSync(join(dir, 'bad-lambda'))).toBe(false);
  });

  test("--teacher-scale learned is the teacher's own logit scale (same losses as that number given, others differ); bad values are usage errors", async () => {
    const { model } = await loadModel(join(dir, 'student.safetensors'), {});
    const own = tf.tidy(() => model.logitScaleExp().dataSync()[0]);
    model.dispose();
    const run = async (scale: string) => {
      const out = join(dir, `out-scale-${scale}`);
      const r = await runMain([...common(), '--sparsity', '0', '--stage-steps', '2', '--teacher-scale', scale, '--out', out]);
      expect(r.status, show(r)).toBe(0);
      return { r, losses: readFileSync(join(out, 'stage-1', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as StepLine).losses.affinity) };
    };
    const learned = await run('learned');
    expect(learned.r.stderr).toMatch(new RegExp(`affinity mimicking \\(teacher scale learned: ${own.toFixed(4).replace('.', '\\.')}\\)`));
    const given = await run(String(own));
    const tiny = await run('50');
    expect(tiny.r.stderr).toMatch(/affinity mimicking \(teacher scale 50, TinyCLIP\)/);
    for (let i = 0; i < 2; i++) {
      expect(Math.abs(learned.losses[i] - given.losses[i]), `step ${i + 1}`).toBeLessThanOrEqual(1e-5 * given.losses[i]);
      expect(Math.abs(learned.losses[i] - tiny.losses[i]), `step ${i + 1}`).toBeGreaterThan(1e-3);
    }
    for (const bad of ['0', '-2', 'own', '']) expectOneLineError(expect, await runMain([...common(), '--sparsity', '0', '--teacher-scale', bad, '--out', join(dir, 'bad-scale')]), /--teacher-scale: expected a positive number or 'learned'/, 2);
    expect(existsSync(join(dir, 'bad-scale'))).toBe(false);
  });

  test('the ORT teacher engine gives the tfjs teacher features of a batch within 1e-4 (normalised, row-major)', async () => {
    const path = join(dir, 'student.safetensors');
    const model = (await loadModel(path, { fused: true })).model;
    model.eval();
    const tokenizer = ClipTokenizer.fromDir(join(dir, 'vocab'));
    const loop = await ImageTextLoop.load(join(dir, 'data'), 'train', model.cfg.image.imageSize, { seed: 0 });
    const live = await openLiveTeacher(model, path, 'ort', 'tfjs wasm');
    const b = loop.next(4, tokenizer, model.cfg.text.contextLength);
    try {
      expect(live.line).toMatch(/^engine ort /);
      expect(live.engine).not.toBeNull();
      const ref = teacherFeatures(model, b);
      const got = await engineTeacherFeatures(live.engine!, b);
      const D = model.cfg.embedDim;
      let worst = 0;
      for (const k of ['teacherImg', 'teacherGt', 'teacherSyn'] as const) {
        const [x, y] = [ref[k], got[k]];
        expect(y === undefined, k).toBe(x === undefined);
        if (!x || !y) continue;
        expect(y).toBeInstanceOf(Float32Array);
        expect(y.length, k).toBe(4 * D);
        for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i] - y[i]));
        for (let row = 0; row < 4; row++) {
          let n2 = 0;
          for (let j = 0; j < D; j++) n2 += y[row * D + j] ** 2;
          expect(Math.sqrt(n2)).toBeCloseTo(1, 5);
        }
      }
      expect(ref.teacherSyn).toBeDefined(); // the batch has synthetic captions: all three compared
      console.log(`teacher features ort vs tfjs: max |Δ| ${worst.toExponential(2)}`);
      expect(worst).toBeLessThanOrEqual(1e-4);
    } finally {
      tf.dispose([b.images, b.gtTokens, ...(b.synTokens ? [b.synTokens] : [])]);
      await live.engine?.dispose();
      model.dispose();
    }
  });

  test('a bad --teacher-engine is a one-line usage error; an .onnx --teacher is refused in one line', async () => {
    for (const e of ['onnx', 'ORT', '']) expectOneLineError(expect, await runMain([...common(), '--sparsity', '0.5', '--teacher-engine', e, '--out', join(dir, 'bad-engine')]), new RegExp(`--teacher-engine: expected one of ort, tfjs, got '${e}'`), 2);
    expect(existsSync(join(dir, 'bad-engine'))).toBe(false);
    const onnx = await runMain(['distill', '--teacher', join(dir, 'teacher.onnx'), '--init', join(dir, 'student.safetensors'), '--data', join(dir, 'data'), '--vocab', join(dir, 'vocab'), '--sparsity', '0.5', '--out', join(dir, 'bad-onnx')]);
    expectOneLineError(expect, onnx, /--teacher .*teacher\.onnx: an ONNX teacher is not supported by mclip distill/);
  });

  test('bad stage lists, targets outside (0, 1), an unreadable or missing teacher: one-line errors', async () => {
    expect(parseTowers('both')).toEqual(['text', 'image']);
    expect(parseTowers('image')).toEqual(['image']);
    expect(parseSparsities('0')).toEqual([0]);
    for (const t of ['txt', 'text,text', '']) expectOneLineError(expect, await runMain([...common(), '--sparsity', '0.5', '--towers', t, '--out', join(dir, 'bad')]), /--towers: expected/, 2);
    const stages = join(dir, 'bad-stages.json');
    for (const [body, why] of [['[{"sparsity": 0.5}, {"sparsity": 0.4}]', /sparsities must increase/], ['[{"sparsity": 1}]', /stage 1: sparsity must be a number in \(0, 1\)/], ['{"sparsity": 0.5}', /non-empty JSON list/], ['[{"sparsity": 0.5, "teacher": "mine"}]', /teacher must be/], ['[{"sparsity": 0.5, "step": 3}]', /unknown key 'step'/], ['not json', /not JSON/]] as const) {
      writeFileSync(stages, body);
      expectOneLineError(expect, await runMain([...common(), '--stages', stages, '--out', join(dir, 'bad')]), why, 2);
    }
    expectOneLineError(expect, await runMain([...common(), '--stages', stages, '--sparsity', '0.5', '--out', join(dir, 'bad')]), /either --sparsity .* or --stages/, 2);
    expect(parseSparsities('0.25, 0.5,0.75')).toEqual([0.25, 0.5, 0.75]);
    for (const [s, why] of [['0.5,0.25', /must increase/], ['0.25,1', /in \(0, 1\)/], ['-0.1', /in \(0, 1\)/], ['0,0.5', /in \(0, 1\)/], ['a,b', /comma-separated numbers/], ['0.25,,0.5', /comma-separated numbers/]] as const) {
      const r = await runMain([...common(), '--sparsity', s, '--out', join(dir, 'bad')]);
      expectOneLineError(expect, r, why, 2);
    }
    const junk = join(dir, 'vocab', 'clip-merges.txt');
    const r = await runMain(['distill', '--teacher', junk, '--init', join(dir, 'student.safetensors'), '--data', join(dir, 'data'), '--vocab', join(dir, 'vocab'), '--sparsity', '0.5', '--out', join(dir, 'bad2')]);
    expectOneLineError(expect, r, /--teacher .*clip-merges\.txt: cannot be read as a model/);
    const n = await runMain(['distill', '--init', join(dir, 'student.safetensors'), '--data', join(dir, 'data'), '--vocab', join(dir, 'vocab'), '--sparsity', '0.5', '--out', join(dir, 'bad3')]);
    expectOneLineError(expect, n, /--teacher is needed unless --reinforced/, 2);
    expect(existsSync(join(dir, 'bad3', 'stages.jsonl'))).toBe(false);
  });
});
