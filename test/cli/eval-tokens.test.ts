/**
 * `mclip eval` with the token flags (issue 12): the model is embedded in tfjs with the reducers
 * installed (`truncate` alone in onnxruntime, from its dynamic-length export), truncation is exact on a causal tower, pruning lowers the measured text MACs of the
 * split's captions, and the flags are refused with --shard.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { EvalReport } from '../../src/eval/index.js';
import { buildMicroInputs } from '../recipe/micro.js';
import { expectOneLineError, show, tempDir } from './helpers.js';
import { runMain } from './in-process.js';

describe('mclip eval: token flags', () => {
  const tmp = tempDir('eval-tokens');
  const dir = tmp.dir;
  afterAll(() => tmp.cleanup());
  beforeAll(async () => {
    await buildMicroInputs(dir);
  });

  const evalRow = async (name: string, flags: string[]) => {
    const json = join(dir, `${name}.json`);
    const r = await runMain(['eval', '--model', `${name}=${join(dir, 'model.safetensors')}`, '--data', join(dir, 'data'), '--vocab', join(dir, 'vocab'), '--templates', 'single', '--no-latency', '--json', json, ...flags]);
    expect(r.status, show(r)).toBe(0);
    return { report: JSON.parse(readFileSync(json, 'utf8')) as EvalReport, stderr: r.stderr };
  };

  test('truncate: the same figures (exact on a causal tower); pruning: fewer text MACs measured', async () => {
    const base = (await evalRow('base', [])).report.rows[0]!;
    const trunc = await evalRow('trunc', ['--text-padding', 'truncate']);
    const t = trunc.report.rows[0]!;
    // truncate alone has an ONNX form: embedded in onnxruntime from the 'truncate' export
    expect(trunc.stderr).toMatch(/trunc: text tokens --text-padding truncate: embedded in onnxruntime \(the 'truncate' export, each batch cut to its longest caption\); timed in tfjs/);
    expect((trunc.report.meta.engines as { engine: string; requested: string }[])[0]).toMatchObject({ engine: 'ort' });
    const tfjs = await evalRow('trunc-tfjs', ['--text-padding', 'truncate', '--engine', 'tfjs']);
    expect(tfjs.stderr).toMatch(/trunc-tfjs: text tokens --text-padding truncate: embedded and timed in tfjs/);
    expect(tfjs.report.rows[0]!.zeroShot).toEqual(base.zeroShot);
    expect(t.zeroShot).toEqual(base.zeroShot);
    expect(t.retrieval).toEqual(base.retrieval);
    // truncation runs the present tokens only: what the rescaled profile of the full row assumes
    expect(t.macs.textPresent! / base.macs.textPresent!).toBeCloseTo(1, 2);
    const pruned = (await evalRow('pruned', ['--prune-layers', '1', '--keep', '0.5', '--text-padding', 'truncate'])).report.rows[0]!;
    expect(pruned.macs.textPresent!).toBeLessThan(0.95 * base.macs.textPresent!);
    // the table shows what the reduced model spends: the measured MACs, not the full context's
    expect(pruned.macs.textReduced).toBe(pruned.macs.textPresent);
    expect(base.macs.textReduced).toBeUndefined();
    expect(pruned.params.total).toBe(base.params.total);
  });

  test('--conv-blocks compact runs the mct tower\'s last RepMixer block on the kept tokens: fewer text MACs than restore', async () => {
    const flags = ['--prune-layers', '1', '--keep', '0.5', '--text-padding', 'truncate'];
    const restore = (await evalRow('restore', [...flags, '--conv-blocks', 'restore'])).report.rows[0]!;
    const compact = await evalRow('compact', [...flags, '--conv-blocks', 'compact']);
    const c = compact.report.rows[0]!;
    expect(compact.stderr).toMatch(/compact: text tokens --text-padding truncate --prune-layers 1 --keep 0\.5 --conv-blocks compact:/);
    expect(c.macs.textPresent!).toBeLessThan(0.97 * restore.macs.textPresent!);
    // the default is restore: the same figures without the flag
    const dflt = (await evalRow('default', flags)).report.rows[0]!;
    expect(dflt.macs.textPresent).toBe(restore.macs.textPresent);
    expect(dflt.retrieval).toEqual(restore.retrieval);
  });

  test('token flags with --shard, and half a pair of flags, are usage errors before any data loads', async () => {
    const common = ['eval', '--model', join(dir, 'model.safetensors'), '--data', join(dir, 'data'), '--vocab', join(dir, 'vocab')];
    expectOneLineError(expect, await runMain([...common, '--shard', '0/2', '--json', join(dir, 'p.json'), '--text-padding', 'truncate']), /--text-padding \/ --prune-layers \/ --merge-layers: not with --shard/, 2);
    expectOneLineError(expect, await runMain([...common, '--no-latency', '--keep', '0.5']), /--prune-layers and --keep go together/, 2);
    expectOneLineError(expect, await runMain([...common, '--no-latency', '--conv-blocks', 'compact']), /--conv-blocks goes with --prune-layers or --merge-layers/, 2);
    expectOneLineError(expect, await runMain([...common, '--no-latency', '--prune-layers', '1', '--keep', '0.5', '--conv-blocks', 'unmerge']), /conv-blocks/, 2);
  });
});
