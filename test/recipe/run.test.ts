/**
 * `mclip run`: the micro recipe end to end (TinyCLIP 50 % → token settings → sigmoid switch → fine-tune →
 * eval → ONNX) with one table row per model; --resume skips finished stages and a changed stage re-runs
 * it and everything downstream; a SIGKILL mid-stage and --resume give the models and table of an
 * uninterrupted run; --dry-run prints the plan with sizes and writes nothing.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { EvalReport } from '../../src/eval/report.js';
import { CLI, runCli, show, tempDir } from '../cli/helpers.js';
import { runMain } from '../cli/in-process.js';
import { ROOT } from '../paths.js';
import { buildMicroInputs, MICRO_RECIPE, writeRecipe } from './micro.js';

interface Manifest {
  stages: { name: string; status: string; seconds?: number; command: string | null }[];
}

const manifest = (run: string) => JSON.parse(readFileSync(join(run, 'manifest.json'), 'utf8')) as Manifest;

/** sha256 of every model and ONNX file a run made, by path inside the run. */
function products(run: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (/\.(safetensors|onnx)$/.test(e.name)) out[relative(run, p)] = createHash('sha256').update(readFileSync(p)).digest('hex');
    }
  };
  walk(join(run, 'stages'));
  return out;
}

const NAMES = ['teacher', 'tiny50', 'tokens', 'sigmoid', 'sigmoid-ft'];

describe('mclip run', () => {
  const tmp = tempDir('recipe-run');
  const dir = tmp.dir;
  let recipe = '';
  afterAll(() => tmp.cleanup());
  beforeAll(async () => {
    await buildMicroInputs(dir);
    recipe = writeRecipe(dir, MICRO_RECIPE);
  });

  // The uninterrupted run, made once: the end-to-end test reads it (then changes its folder), the SIGKILL test
  // compares against the products and table it had when it finished.
  let reference: Promise<{ run: string; r: Awaited<ReturnType<typeof runMain>>; products: Record<string, string>; table: string }> | undefined;
  const uninterrupted = () =>
    (reference ??= (async () => {
      const run = join(dir, 'run');
      const r = await runMain(['run', recipe, '--out', run]);
      expect(r.status, show(r)).toBe(0);
      return { run, r, products: products(run), table: readFileSync(join(run, 'stages', 'table', 'table.md'), 'utf8') };
    })());

  test('the micro recipe end to end: one table row per model; --resume skips; a change re-runs downstream', async () => {
    const { run, r } = await uninterrupted();
    const report = JSON.parse(readFileSync(join(run, 'stages', 'table', 'report.json'), 'utf8')) as EvalReport;
    expect(report.rows.map((x) => x.name)).toEqual(NAMES);
    const [teacher, tiny, tokens, sig, ft] = report.rows;
    expect(tiny!.params.total).toBeLessThan(teacher!.params.total);
    expect(tokens!.params.total).toBe(tiny!.params.total);
    expect(sig!.params.total).toBe(tiny!.params.total);
    expect(ft!.params.total).toBe(tiny!.params.total);
    for (const row of report.rows) expect(row.zeroShot!.top1).toBeGreaterThanOrEqual(0);
    // the table on stdout: every model, the baseline first
    for (const n of NAMES) expect(r.stdout).toContain(n);
    expect(r.stdout).toMatch(/teacher .*baseline/);
    expect(readFileSync(join(run, 'stages', 'table', 'table.md'), 'utf8').trim()).toBe(r.stdout.trim());
    const svg = readFileSync(join(run, 'stages', 'table', 'pareto.svg'), 'utf8');
    expect(svg).toMatch(/^(<\?xml[^>]*>\s*)?<svg/);
    expect(svg.match(/<circle/g), 'one point per model').toHaveLength(NAMES.length);
    expect(existsSync(join(run, 'stages', 'onnx', 'model.onnx'))).toBe(true);
    expect(readFileSync(join(run, 'recipe.yaml'), 'utf8')).toBe(MICRO_RECIPE);
    const m = manifest(run);
    expect(m.stages.map((s) => s.status)).toEqual(Array(6).fill('done'));
    expect(m.stages[0]!.command).toMatch(/^mclip distill .*--sparsity 0\.5 --stage-steps 4 .* --out stages\/tiny50\/out$/);
    const before = products(run);

    const again = await runMain(['run', recipe, '--out', run, '--resume']);
    expect(again.status, show(again)).toBe(0);
    expect(again.stderr.match(/done earlier, skipped/g)).toHaveLength(6);
    expect(again.stdout.trim()).toBe(r.stdout.trim());
    expect(products(run)).toEqual(before);

    const refused = await runMain(['run', recipe, '--out', run]);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/already holds a run \(manifest\.json\): pass --resume/);

    const changed = writeRecipe(dir, MICRO_RECIPE.replace('stage-steps: 2', 'stage-steps: 3'), 'micro-changed.yaml');
    const c = await runMain(['run', changed, '--out', run, '--resume']);
    expect(c.status, show(c)).toBe(0);
    expect(c.stderr.match(/done earlier, skipped/g)).toHaveLength(3); // tiny50, tokens, sigmoid
    expect(c.stderr).toMatch(/sigmoid-ft: the recipe or an upstream stage changed: starting it again/);
    const after = products(run);
    expect(after['stages/tiny50/out/stage-1/model.safetensors']).toBe(before['stages/tiny50/out/stage-1/model.safetensors']);
    expect(after['stages/sigmoid-ft/out/stage-1/model.safetensors']).not.toBe(before['stages/sigmoid-ft/out/stage-1/model.safetensors']);
  }, 60_000);

  test('SIGKILL during a stage, then --resume: the models and the table of the uninterrupted run', async () => {
    const killed = join(dir, 'killed');
    const ref = await uninterrupted();
    // Start the same run and kill it once a stage after the first is under way: the fine-tune, which runs for
    // seconds (the stages between take milliseconds, so one could end between the poll and the kill).
    const child = spawn(process.execPath, [CLI, 'run', recipe, '--out', killed, '--quiet'], { cwd: ROOT, env: { ...process.env, MCLIP_BACKEND: 'wasm' }, stdio: 'ignore' });
    const stoppedIn = await new Promise<string>((resolve, reject) => {
      const t = setInterval(() => {
        try {
          const running = existsSync(join(killed, 'manifest.json')) ? manifest(killed).stages.find((s) => s.status === 'running') : undefined;
          if (running && running.name === 'sigmoid-ft') {
            clearInterval(t);
            child.kill('SIGKILL');
            resolve(running.name);
          }
        } catch {
          /* manifest mid-rename */
        }
      }, 20);
      child.on('exit', () => {
        clearInterval(t);
        reject(new Error('the run ended before it could be killed'));
      });
    });
    await new Promise((r) => child.on('close', r));
    expect(manifest(killed).stages.find((s) => s.name === stoppedIn)!.status).toBe('running');
    const resumed = await runCli(['run', recipe, '--out', killed, '--resume', '--quiet']);
    expect(resumed.status, show(resumed)).toBe(0);
    expect(products(killed)).toEqual(ref.products);
    expect(readFileSync(join(killed, 'stages', 'table', 'table.md'), 'utf8')).toBe(ref.table);
    expect(manifest(killed).stages.every((s) => s.status === 'done' || s.status === 'skipped')).toBe(true);
  }, 60_000);

  test('--dry-run: the plan with sizes, nothing written', async () => {
    const out = join(dir, 'dry');
    const r = await runMain(['run', recipe, '--out', out, '--dry-run']);
    expect(r.status, show(r)).toBe(0);
    expect(existsSync(out)).toBe(false);
    expect(r.stdout).toMatch(/^model teacher: model\.safetensors — params 0\.\d{3} M, GMACs image \/ text \d\.\d{3} \/ \d\.\d{3} \(the checkpoint\)$/m);
    expect(r.stdout).toMatch(/^\[1\] tiny50 \(distill\)\n {4}mclip distill .*--sparsity 0\.5 .*\n {4}→ params 0\.\d{3} M, GMACs image \/ text known after the run \(expected at sparsity 0\.5 of text\+image/m);
    expect(r.stdout).toMatch(/^\[5\] table \(eval\) after .*\n {4}mclip eval .*\n {4}compares teacher, tiny50, tokens \(--text-padding truncate\), sigmoid, sigmoid-ft$/m);
  });
});
