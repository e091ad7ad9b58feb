import { describe, expect, it } from 'vitest';
import { assertStateDictMatches, compareStateDict, diffStateDict } from '../../src/base/io/state-dict-check.js';
import type { StateDict } from '../../src/base/io/tensor-data.js';
import { MclipError } from '../../src/errors.js';

const t = (...shape: number[]) => ({
  dtype: 'float32' as const,
  shape,
  data: new Float32Array(shape.reduce((a, b) => a * b, 1)),
});

describe('compareStateDict', () => {
  it('returns null when keys and shapes match', () => {
    const expected = new Map([
      ['a', [2, 3]],
      ['b', []],
    ]);
    const got: StateDict = new Map([
      ['b', t()],
      ['a', t(2, 3)],
    ]);
    expect(compareStateDict(expected, got, 'm.pt')).toBeNull();
    expect(() => assertStateDictMatches(expected, got, 'm.pt')).not.toThrow();
  });

  it('lists missing, unexpected and mis-shaped keys on one line', () => {
    const expected = new Map([
      ['conv.weight', [64, 3, 3, 3]],
      ['conv.bias', [64]],
      ['scale', []],
    ]);
    const got: StateDict = new Map([
      ['conv.weight', t(64, 3, 1, 1)],
      ['scale', t(1)],
      ['extra', t(2)],
    ]);
    const err = compareStateDict(expected, got, 'm.pt');
    expect(err).toBeInstanceOf(MclipError);
    expect(err?.message).toBe(
      'm.pt: state dict does not match the model: 1 missing key (conv.bias); 1 unexpected key (extra); ' +
        '2 mis-shaped keys (conv.weight: expected [64, 3, 3, 3], got [64, 3, 1, 1]; scale: expected [], got [1])',
    );
    expect(() => assertStateDictMatches(expected, got, 'm.pt')).toThrow(err?.message);
  });

  it('truncates long lists with a count', () => {
    const expected = new Map(Array.from({ length: 12 }, (_, i) => [`k${i}`, [1]] as [string, number[]]));
    const got: StateDict = new Map(Array.from({ length: 8 }, (_, i) => [`x${i}`, t(1)]));
    const msg = compareStateDict(expected, got, 'src')?.message ?? '';
    expect(msg).toBe(
      'src: state dict does not match the model: 12 missing keys (k0, k1, k2, k3, k4, ... (7 more)); ' +
        '8 unexpected keys (x0, x1, x2, x3, x4, ... (3 more))',
    );
    expect(msg).not.toContain('\n');
    const d = diffStateDict(expected, got);
    expect([d.missing.length, d.unexpected.length, d.misshaped.length]).toEqual([12, 8, 0]);
  });
});
