/**
 * Recipe errors: an unknown key, a wrong type, a stage referring to a missing stage, a missing file, a
 * flag mclip run sets itself — each is one line naming file, line and key path, exits non-zero and writes
 * nothing. The schema is the commands' own flag tables, so a key's type is its flag's type.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { RecipeDocument } from '../../src/recipe/document.js';
import { parseRecipe } from '../../src/recipe/schema.js';
import { planRecipe } from '../../src/recipe/plan.js';
import { expectOneLineError, tempDir } from '../cli/helpers.js';
import { runMain } from '../cli/in-process.js';

const GOOD = `name: t
model:
  checkpoint: model.safetensors
  vocab: vocab
data: data
stages:
  - name: small
    kind: distill
    sparsity: 0.5
    stage-steps: 4
  - name: table
    kind: eval
    latency: false
`;

describe('recipe schema', () => {
  const tmp = tempDir('recipe-schema');
  const dir = tmp.dir;
  afterAll(() => tmp.cleanup());
  beforeAll(() => {
    writeFileSync(join(dir, 'model.safetensors'), 'not read by the schema');
    for (const d of ['vocab', 'data']) writeFileSync(join(dir, d), '');
  });

  const expectRefused = async (name: string, text: string, pattern: RegExp) => {
    const file = join(dir, `${name}.yaml`);
    writeFileSync(file, text);
    const out = join(dir, `run-${name}`);
    const r = await runMain(['run', file, '--out', out]);
    expectOneLineError(expect, r, pattern);
    expect(r.status).not.toBe(0);
    expect(existsSync(out), 'nothing written').toBe(false);
  };

  test('a good recipe plans: defaults filled from the recipe, outputs inside the run folder, refs resolved', () => {
    const file = join(dir, 'good.yaml');
    writeFileSync(file, GOOD);
    const doc = RecipeDocument.read(file);
    const plan = planRecipe(doc, parseRecipe(doc, 'good'), { root: join(dir, 'run') });
    const [small, table] = plan.stages;
    expect(small!.argv).toEqual([
      'distill', '--sparsity', '0.5', '--stage-steps', '4', '--data', join(dir, 'data'), '--vocab', join(dir, 'vocab'), '--seed', '0',
      '--init', join(dir, 'model.safetensors'), '--teacher', join(dir, 'model.safetensors'), '--out', join(dir, 'run', 'stages', 'small', 'out'),
    ]);
    expect(small!.output).toBe(join(dir, 'run', 'stages', 'small', 'out', 'stage-1', 'model.safetensors'));
    expect(table!.compare!.map((c) => [c.name, c.ref.path])).toEqual([['baseline', join(dir, 'model.safetensors')], ['small', small!.output]]);
    expect(table!.after).toEqual(['small']);
    // the fingerprint follows the options and the upstream stages, not the run folder
    const again = planRecipe(doc, parseRecipe(doc, 'good'), { root: join(dir, 'elsewhere') });
    expect(again.stages.map((s) => s.fingerprint)).toEqual(plan.stages.map((s) => s.fingerprint));
    const changed = RecipeDocument.parse(file, GOOD.replace('stage-steps: 4', 'stage-steps: 5'));
    const p2 = planRecipe(changed, parseRecipe(changed, 'good'), { root: join(dir, 'run') });
    expect(p2.stages[0]!.fingerprint).not.toBe(plan.stages[0]!.fingerprint);
    expect(p2.stages[1]!.fingerprint, 'downstream of a change').not.toBe(plan.stages[1]!.fingerprint);
  });

  test('a fine-tune after a tokens stage trains with its reducers; its own token keys win', () => {
    const text = GOOD.replace('  - name: table', `  - name: pruned
    kind: tokens
    prune-layers: "0"
    keep: 0.5
  - name: tuned
    kind: finetune
    stage-steps: 4
  - name: retuned
    kind: finetune
    from: small
    merge-layers: "0"
    merge: 2
    stage-steps: 4
  - name: table`);
    const file = join(dir, 'tokens-ft.yaml');
    writeFileSync(file, text);
    const doc = RecipeDocument.read(file);
    const plan = planRecipe(doc, parseRecipe(doc, 'tokens-ft'), { root: join(dir, 'run') });
    const byName = new Map(plan.stages.map((s) => [s.name, s]));
    const tuned = byName.get('tuned')!;
    expect(tuned.argv!.join(' ')).toContain('--sparsity 0 --prune-layers 0 --keep 0.5');
    expect(tuned.argv![tuned.argv!.indexOf('--init') + 1]).toBe(byName.get('small')!.output);
    expect(tuned.model!.tokens).toEqual(['--prune-layers', '0', '--keep', '0.5']);
    const retuned = byName.get('retuned')!;
    expect(retuned.argv!.join(' ')).toContain('--merge-layers 0 --merge 2');
    expect(retuned.argv!.join(' ')).not.toContain('--prune-layers');
    expect(retuned.model!.tokens).toEqual(['--merge-layers', '0', '--merge', '2']);
    const table = byName.get('table')!;
    expect(table.compare!.map((c) => [c.name, c.ref.tokens.join(' ')])).toEqual([
      ['baseline', ''], ['small', ''], ['pruned', '--prune-layers 0 --keep 0.5'], ['tuned', '--prune-layers 0 --keep 0.5'], ['retuned', '--merge-layers 0 --merge 2'],
    ]);
  });

  test('an unknown key: file, line and key path', async () => {
    await expectRefused('unknown', GOOD.replace('    stage-steps: 4', '    stage-steps: 4\n    stage-stepz: 5'), /unknown\.yaml:11: stages\[0\]\.stage-stepz: unknown key 'stage-stepz' for a distill stage \(it takes: name, kind, from, .*stage-steps/);
  });

  test('a wrong type: the flag\'s type', async () => {
    await expectRefused('type', GOOD.replace('stage-steps: 4', 'stage-steps: four'), /type\.yaml:10: stages\[0\]\.stage-steps: expected a number, got 'four'/);
    await expectRefused('choice', GOOD.replace('latency: false', 'latency: false\n    engine: gpu'), /choice\.yaml:14: stages\[1\]\.engine: expected one of ort, tfjs/);
  });

  test('a reference to a missing stage, and to a later one', async () => {
    await expectRefused('ref', GOOD.replace('    latency: false', '    latency: false\n    models: [small, nope]'), /ref\.yaml:14: stages\[1\]\.models\[1\]: no stage is named 'nope'/);
    await expectRefused('later', GOOD.replace('    kind: distill', '    kind: distill\n    from: table'), /later\.yaml:9: stages\[0\]\.from: stage 'table' comes later/);
  });

  test('a missing file, a flag mclip run sets, a duplicate stage name, bad YAML', async () => {
    await expectRefused('missing', GOOD.replace('checkpoint: model.safetensors', 'checkpoint: nothere.safetensors'), /missing\.yaml:3: model\.checkpoint: no such file: .*nothere\.safetensors/);
    await expectRefused('managed', GOOD.replace('    stage-steps: 4', '    stage-steps: 4\n    out: x'), /managed\.yaml:11: stages\[0\]\.out: set by mclip run/);
    await expectRefused('dup', GOOD.replace('name: table', 'name: small'), /dup\.yaml:11: stages\[1\]\.name: a stage named 'small' comes earlier/);
    await expectRefused('yaml', GOOD.replace('    sparsity: 0.5', '   sparsity: [0.5'), /yaml\.yaml:\d+: \(top level\): not valid YAML/);
  });

  test('${VAR} is read from the environment; unset, it is an error naming the key', async () => {
    await expectRefused('env', GOOD.replace('checkpoint: model.safetensors', 'checkpoint: ${MCLIP_TEST_UNSET_CKPT}'), /env\.yaml:3: model\.checkpoint: \$\{MCLIP_TEST_UNSET_CKPT\} is not set in the environment/);
    const file = join(dir, 'env-ok.yaml');
    writeFileSync(file, GOOD.replace('checkpoint: model.safetensors', 'checkpoint: ${MCLIP_TEST_CKPT:-model.safetensors}'));
    const doc = RecipeDocument.read(file);
    const plan = planRecipe(doc, parseRecipe(doc, 'env-ok'), { root: join(dir, 'run'), env: {} });
    expect(plan.baseline.path).toBe(join(dir, 'model.safetensors'));
  });
});
