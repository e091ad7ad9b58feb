/**
 * Failing inputs: every error is ONE line `mclip: error: …` on stderr (besides the optional `mclip: backend …`
 * line), a non-zero exit, no stack trace — and `--debug` does print the stack.
 * The cases here fail before the model is built (fast); input-shape errors (which need the model) are in
 * embed-input-errors.test.ts.
 */
import { copyFileSync, openSync, readSync, closeSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { zipSync } from 'fflate';
import { afterAll, it } from 'vitest';

import { fixture, HAVE_FIXTURES, describeFixtures } from '../paths.js';
import { expectOneLineError, runCli, show, STACK_FRAME, tempDir } from './helpers.js';

describeFixtures('one-line CLI errors', { concurrent: true }, () => {
  const S0 = (f: string) => fixture('mobileclip_s0', f);
  const tmp = tempDir('errors');
  afterAll(() => tmp.cleanup());
  const out = join(tmp.dir, 'never-written.safetensors');

  // --- crafted bad files -------------------------------------------------------------------------------
  const truncatedPt = join(tmp.dir, 'truncated.pt');
  {
    const buf = Buffer.alloc(1 << 20);
    const fd = openSync(HAVE_FIXTURES ? S0('model_fp16.pt') : '/dev/null', 'r');
    const n = readSync(fd, buf, 0, buf.length, 0);
    closeSync(fd);
    writeFileSync(truncatedPt, buf.subarray(0, n));
  }
  const evilPt = join(tmp.dir, 'evil.pt');
  // protocol 2: GLOBAL os.system, BINUNICODE "ls", TUPLE1, REDUCE, STOP
  const evilPickle = Buffer.from('\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.', 'latin1');
  writeFileSync(evilPt, zipSync({ 'archive/data.pkl': evilPickle, 'archive/version': Buffer.from('3\n') }, { level: 0 }));
  const longHeader = join(tmp.dir, 'long-header.safetensors');
  {
    const b = Buffer.alloc(64, 0x20);
    b.writeBigUInt64LE(1000n, 0);
    writeFileSync(longHeader, b);
  }
  const badJson = join(tmp.dir, 'bad-json.safetensors');
  {
    const json = Buffer.from('{"image": nope}');
    const h = Buffer.alloc(8);
    h.writeBigUInt64LE(BigInt(json.length), 0);
    writeFileSync(badJson, Buffer.concat([h, json]));
  }
  const renamedPt = join(tmp.dir, 'weights.onnx');
  if (HAVE_FIXTURES) copyFileSync(S0('inputs.safetensors'), renamedPt);

  const embed = (checkpoint: string, inputs = S0('inputs.safetensors'), ...extra: string[]) => [
    'embed', '--arch', 'mobileclip_s0', '--checkpoint', checkpoint, '--inputs', inputs, '--out', out, ...extra,
  ];

  // --- the cases ----------------------------------------------------------------------------------------
  it('truncated .pt (first 1 MiB)', async ({ expect }) => {
    const r = await runCli(embed(truncatedPt));
    expectOneLineError(expect, r, /truncated\.pt: not a valid PyTorch checkpoint .*truncated/);
  });

  it('.pt whose pickle calls a disallowed global (os.system)', async ({ expect }) => {
    const r = await runCli(embed(evilPt));
    expectOneLineError(expect, r, /evil\.pt:archive\/data\.pkl .*'os\.system', which is not allowed/);
  });

  it('--debug prints the stack for the disallowed global', async ({ expect }) => {
    const r = await runCli([...embed(evilPt), '--debug']);
    expect(r.status, show(r)).toBe(1);
    expect(r.stderr).toMatch(/^MclipError: .*'os\.system', which is not allowed/m);
    expect(r.stderr).toMatch(STACK_FRAME);
    expect(r.stderr).toMatch(/\.js:\d+:\d+\)?$/m);
  });

  it('inputs safetensors whose header length exceeds the file', async ({ expect }) => {
    const r = await runCli(embed(S0('model_fp16.pt'), longHeader));
    expectOneLineError(expect, r, /long-header\.safetensors: invalid safetensors file: header length 1000 exceeds the file size 64/);
  });

  it('inputs safetensors whose header is not JSON (and --debug shows the stack)', async ({ expect }) => {
    const [r, d] = await Promise.all([runCli(embed(S0('model_fp16.pt'), badJson)), runCli([...embed(S0('model_fp16.pt'), badJson), '--debug'])]);
    expectOneLineError(expect, r, /bad-json\.safetensors: invalid safetensors file: header is not valid JSON/);
    expect(d.status, show(d)).toBe(1);
    expect(d.stderr).toMatch(/header is not valid JSON/);
    expect(d.stderr).toMatch(STACK_FRAME);
    expect(d.stderr).toMatch(/\.js:\d+:\d+\)?$/m);
  });

  it('--arch nonexistent lists the known architectures', async ({ expect }) => {
    const r = await runCli(['embed', '--arch', 'nonexistent', '--checkpoint', S0('model_fp16.pt'), '--inputs', S0('inputs.safetensors'), '--out', out]);
    expectOneLineError(expect, r, /unknown arch 'nonexistent' \(known: .*mobileclip_s0.*\)/);
  });

  it('missing checkpoint path', async ({ expect }) => {
    const missing = join(tmp.dir, 'no-such-model.pt');
    const r = await runCli(embed(missing));
    expectOneLineError(expect, r, new RegExp(`^mclip: error: ${missing.replace(/[.]/g, '\\.')}: checkpoint file not found$`));
  });

  it('checkpoint with an unknown extension', async ({ expect }) => {
    const r = await runCli(embed(renamedPt));
    expectOneLineError(expect, r, /weights\.onnx: unknown checkpoint extension '\.onnx'/);
  });

  it('missing inputs file', async ({ expect }) => {
    const r = await runCli(embed(S0('model_fp16.pt'), join(tmp.dir, 'no-inputs.safetensors')));
    expectOneLineError(expect, r, /no-inputs\.safetensors: cannot read file \(ENOENT\)/);
  });

  it('--inputs without --out; nothing to embed', async ({ expect }) => {
    const [a, b] = await Promise.all([
      runCli(['embed', '--arch', 'mobileclip_s0', '--checkpoint', S0('model_fp16.pt'), '--inputs', S0('inputs.safetensors')]),
      runCli(['embed', '--arch', 'mobileclip_s0', '--checkpoint', S0('model_fp16.pt')]),
    ]);
    expectOneLineError(expect, a, /--inputs needs --out/);
    expectOneLineError(expect, b, /give --inputs .* or --images\/--texts/);
  });

  it('usage errors exit 2 (missing --checkpoint)', async ({ expect }) => {
    const r = await runCli(['embed', '--arch', 'mobileclip_s0']);
    expectOneLineError(expect, r, /checkpoint/, 2);
  });
});
