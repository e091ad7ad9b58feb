/**
 * CLI conventions (issue 8, item 5): --version, unknown commands and options, usage errors that point at the
 * command's --help, numbers echoed as typed, a short first-words message for a wrong --arch, no npm warning.
 */
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { initBackend } from '../../src/base/backend/index.js';
import { CLIP } from '../../src/base/model/clip.js';
import { getConfig } from '../../src/base/model/configs.js';
import { saveModel } from '../../src/base/model/checkpoint.js';
import { ROOT } from '../paths.js';
import { errorLines, expectOneLineError, runCli, show, tempDir } from './helpers.js';
import { runMain } from './in-process.js';

describe('CLI conventions', () => {
  const tmp = tempDir('conventions');
  afterAll(() => tmp.cleanup());
  const ckpt = join(tmp.dir, 'tiny.safetensors');
  const png = join(tmp.dir, 'x.png');
  beforeAll(async () => {
    await initBackend({ backend: 'cpu', quiet: true, gradients: false });
    const model = new CLIP(getConfig('mobileclip_tiny'), { seed: 1 });
    saveModel(model, ckpt);
    model.dispose();
    await sharp({ create: { width: 64, height: 64, channels: 3, background: { r: 200, g: 10, b: 10 } } }).png().toFile(png);
  });

  it('--version prints the package version', async () => {
    const r = await runCli(['--version']);
    expect(r.status, show(r)).toBe(0);
    expect(r.stdout.trim()).toBe((JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version);
  });

  it('an unknown command is a usage error naming it (exit 2), also with --help', async ({ expect }) => {
    for (const args of [['bogus'], ['frobnicate', '--help'], ['--quiet', 'frobnicate']]) {
      const r = await runMain(args);
      expectOneLineError(expect, r, /^mclip: usage error: unknown command '(bogus|frobnicate)' \(commands: tokenize, vocab, .*\) \(see mclip --help\)$/, 2);
    }
    const sub = await runMain(['vocab', 'bogus']);
    expectOneLineError(expect, sub, /unknown vocab subcommand 'bogus' \(expected train\) \(see mclip vocab --help\)$/, 2);
  });

  it('usage errors point at the command\'s own --help', async ({ expect }) => {
    const missing = await runMain(['train', '--data', 'x']);
    expectOneLineError(expect, missing, /missing required option --out \(see mclip train --help\)$/, 2);
    const sub = await runMain(['vocab', 'train', '--texts', 'x']);
    expectOneLineError(expect, sub, /missing required options? --size, --out|missing required option --size.*\(see mclip vocab train --help\)$/, 2);
    expect(errorLines(sub.stderr)[0]).toMatch(/\(see mclip vocab train --help\)$/);
  });

  it('a non-numeric number echoes what was typed (both spellings, arrays too)', async ({ expect }) => {
    const a = await runMain(['train', '--data', 'x', '--out', 'y', '--steps', 'abc']);
    expectOneLineError(expect, a, /^mclip: usage error: --steps: expected a number, got 'abc' \(see mclip train --help\)$/, 2);
    const b = await runMain(['train', '--data', 'x', '--out', 'y', '--save-every=often']);
    expectOneLineError(expect, b, /--save-every: expected a number, got 'often'/, 2);
    const c = await runMain(['vocab', 'train', '--texts', 'x', '--out', 'y', '--size', '4k']);
    expectOneLineError(expect, c, /--size: expected a number, got '4k' \(see mclip vocab train --help\)/, 2);
    expect(a.stderr + b.stderr + c.stderr).not.toMatch(/NaN/);
  });

  it('an unknown option is listed once, with its dashes', async ({ expect }) => {
    const r = await runMain(['train', '--data', 'x', '--out', 'y', '--bogus-flag', '1']);
    expectOneLineError(expect, r, /^mclip: usage error: unknown option --bogus-flag \(see mclip train --help\)$/, 2);
    expect(r.stderr.match(/bogus/gi)).toHaveLength(1);
    const two = await runMain(['train', '--data', 'x', '--out', 'y', '--bogus-flag', '--other-one', '2']);
    expectOneLineError(expect, two, /unknown options --bogus-flag, --other-one \(/, 2);
  });

  it('a wrong --arch says so in its first words and stays short', async ({ expect }) => {
    const r = await runMain(['embed', '--arch', 'mobileclip_tiny_base', '--checkpoint', ckpt, '--images', png]);
    expectOneLineError(expect, r, /^mclip: error: wrong --arch\? .*tiny\.safetensors does not fit mobileclip_tiny_base: \d+ missing, \d+ unexpected(, \d+ mis-shaped)? keys \(e\.g\. .+\); the file says it is mobileclip_tiny: drop --arch$/);
    expect(errorLines(r.stderr)[0]!.length).toBeLessThan(320);
    const ok = await runMain(['embed', '--checkpoint', ckpt, '--images', png, png, '--json']);
    expect(ok.status, show(ok)).toBe(0);
  });

  it('npx mclip prints no npm warning (no unknown keys in .npmrc)', async () => {
    const { stdout, stderr } = await promisify(execFile)('npx', ['--no-install', 'mclip', '--version'], { cwd: ROOT, env: { ...process.env, npm_config_update_notifier: 'false' } });
    expect(stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    expect(stderr).not.toMatch(/npm warn/i);
  });

  it('the matrix headers of embed stay unambiguous for long paths and common prefixes', async () => {
    const { formatMatrix } = await import('../../src/cli/commands/embed.js');
    const long = (n: string) => `/data/a/very/long/folder/name/that/goes/on/and/on/${n}.png`;
    const texts = ['a photo of a cat on a mat', 'a photo of a cat on a mattress'];
    const out = formatMatrix({ prefix: 'i', names: [long('cat'), long('dog')] }, { prefix: 't', names: texts }, [[0.1, 0.2], [0.3, 0.4]]);
    const lines = out.split('\n');
    expect(lines[0]!.trim().split(/\s+/)).toEqual(['t1', 't2']);
    expect(lines[1]!.trim().split(/\s+/)).toEqual(['i1', '0.1000', '0.2000']);
    expect(lines.slice(3)).toEqual([`  i1 = ${long('cat')}`, `  i2 = ${long('dog')}`, `  t1 = "${texts[0]}"`, `  t2 = "${texts[1]}"`]);
    writeFileSync(join(tmp.dir, 'm.txt'), out);
  });
});
