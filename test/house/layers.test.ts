/**
 * The house rule of the code's layers: `src/base` (the core) imports nothing outside itself except
 * `src/errors.ts`; plug-ins (src/distill, src/prune, src/merge, src/sigmoid-attn) reach the model only
 * through the core's seams, and neither the core nor the export/eval layers import a plug-in.
 */
import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../../src');
const PLUGINS = ['distill', 'prune', 'merge', 'sigmoid-attn'];

function files(dir: string): string[] {
  const out: string[] = [];
  for (const n of readdirSync(dir)) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) out.push(...files(p));
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** Relative imports of a file, resolved to paths under src (e.g. 'base/nn/module.ts'). */
function imports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/(?:from|import)\s*\(?\s*'(\.[^']+)'/g)) {
    out.push(relative(SRC, resolve(dirname(file), m[1])).replace(/\.js$/, '.ts'));
  }
  return out;
}

describe('code layers', () => {
  it('src/base imports only src/base and src/errors.ts', () => {
    const bad: string[] = [];
    for (const f of files(join(SRC, 'base'))) {
      for (const i of imports(f)) if (!i.startsWith('base/') && i !== 'errors.ts') bad.push(`${relative(SRC, f)} → ${i}`);
    }
    expect(bad).toEqual([]);
  });

  it('no plug-in is imported by the core, export or eval', () => {
    const bad: string[] = [];
    for (const layer of ['base', 'export', 'eval']) {
      for (const f of files(join(SRC, layer))) {
        for (const i of imports(f)) if (PLUGINS.some((p) => i.startsWith(`${p}/`))) bad.push(`${relative(SRC, f)} → ${i}`);
      }
    }
    expect(bad).toEqual([]);
  });

  it('the check sees imports (guards against a vacuous pass)', () => {
    const own = imports(join(SRC, 'base/model/clip.ts'));
    expect(own).toContain('base/nn/module.ts');
  });
});
