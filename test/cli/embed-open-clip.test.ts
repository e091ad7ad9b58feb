import { join } from 'node:path';

import { afterAll, beforeAll, expect, it } from 'vitest';

import { readSafetensors, writeSafetensors } from '../../src/base/io/safetensors.js';
import { toFloat32, type StateDict, type TensorData } from '../../src/base/io/tensor-data.js';
import { fixture, describeFixtures } from '../paths.js';
import { errorLines, expectOneLineError, runCli, show, tempDir, type CliResult } from './helpers.js';
import { relErr } from '../model/helpers.js';

const TOL = 1e-4;
const MC2 = (f: string) => fixture('mobileclip2', 'mobileclip2_s0', f);

function zeros(shape: number[]): TensorData {
  return { dtype: 'float32', shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) };
}

describeFixtures('mclip embed on an open_clip-layout checkpoint (MobileCLIP2-S0 fixture, no --arch)', () => {
  const tmp = tempDir('embed-oc');
  const out = (w: string) => join(tmp.dir, `${w}.safetensors`);
  const base = ['embed', '--checkpoint', MC2('open_clip_model_fp16.safetensors'), '--inputs', MC2('inputs.safetensors')];
  const unknown = join(tmp.dir, 'unknown.safetensors');
  const vit = join(tmp.dir, 'open_clip_vit.safetensors');
  let runs: Record<'unfused' | 'fused' | 'unknown' | 'vit', CliResult>;

  beforeAll(async () => {
    // A layout that is none of ours: a plain classifier.
    writeSafetensors(unknown, new Map([['backbone.conv1.weight', zeros([4, 3, 3, 3])], ['fc.weight', zeros([2, 4])]]) as StateDict);
    // open_clip layout with a trunk we do not build: open_clip's own ViT (CLIP's top-level text keys).
    writeSafetensors(
      vit,
      new Map([
        ['visual.conv1.weight', zeros([8, 3, 4, 4])],
        ['visual.transformer.resblocks.0.ln_1.weight', zeros([8])],
        ['token_embedding.weight', zeros([16, 8])],
        ['positional_embedding', zeros([77, 8])],
        ['text_projection', zeros([8, 8])],
      ]) as StateDict,
    );
    const [u, f, k, v] = await Promise.all([
      runCli([...base, '--out', out('unfused')]),
      runCli([...base, '--out', out('fused'), '--fused']),
      runCli(['embed', '--checkpoint', unknown, '--inputs', MC2('inputs.safetensors'), '--out', out('x')]),
      runCli(['embed', '--checkpoint', vit, '--inputs', MC2('inputs.safetensors'), '--out', out('y')]),
    ]);
    runs = { unfused: u, fused: f, unknown: k, vit: v };
  });
  afterAll(() => tmp.cleanup());

  for (const which of ['unfused', 'fused'] as const) {
    it(`${which}: image_features / text_features match outputs_${which}.safetensors (rel ≤ ${TOL})`, () => {
      const r = runs[which];
      expect(r.status, show(r)).toBe(0);
      expect(errorLines(r.stderr)).toContain(`mclip: wrote image_features, text_features to ${out(which)}`);
      const got = readSafetensors(out(which)).tensors;
      const ref = readSafetensors(MC2(`outputs_${which}.safetensors`)).tensors;
      const ei = relErr(toFloat32(ref.get('image_features')!), toFloat32(got.get('image_features')!));
      const et = relErr(toFloat32(ref.get('text_features')!), toFloat32(got.get('text_features')!));
      console.log(`mclip embed MobileCLIP2-S0 ${which}: image_features ${ei.toExponential(2)}, text_features ${et.toExponential(2)}`);
      expect(ei).toBeLessThanOrEqual(TOL);
      expect(et).toBeLessThanOrEqual(TOL);
    });
  }

  it('a checkpoint in no layout we know is a one-line error naming the layouts', () => {
    expectOneLineError(expect, runs.unknown, /unknown\.safetensors: unknown checkpoint layout \(keys such as 'backbone\.conv1\.weight'.*ml-mobileclip.*open_clip's \('visual\.\*', 'text\.\*'\)/);
  });

  it('an open_clip checkpoint with a trunk we do not support is a one-line error naming the trunk', () => {
    expectOneLineError(expect, runs.vit, /open_clip_vit\.safetensors: open_clip checkpoint with an unsupported image trunk: open_clip's own VisionTransformer \(visual\.transformer\.resblocks\.\*\)/);
  });
});
