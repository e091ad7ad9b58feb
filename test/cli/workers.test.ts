/** How `mclip train` picks its data-parallel ranks (resolveWorkers). */
import { afterEach, describe, expect, it } from 'vitest';
import { availableParallelism } from 'node:os';
import { MIN_ROWS_PER_WORKER, resolveWorkers } from '../../src/cli/commands/train.js';

const saved = process.env.MCLIP_WORKERS;
afterEach(() => {
  if (saved === undefined) delete process.env.MCLIP_WORKERS;
  else process.env.MCLIP_WORKERS = saved;
});

describe('resolveWorkers', () => {
  it('--workers wins, capped by the batch', () => {
    process.env.MCLIP_WORKERS = '3';
    expect(resolveWorkers(2, 32)).toBe(2);
    expect(resolveWorkers(8, 4)).toBe(4);
  });

  it('$MCLIP_WORKERS next; a bad value is a one-line error', () => {
    process.env.MCLIP_WORKERS = '3';
    expect(resolveWorkers(undefined, 32)).toBe(3);
    process.env.MCLIP_WORKERS = 'two';
    expect(() => resolveWorkers(undefined, 32)).toThrow(/^MCLIP_WORKERS must be a positive integer, got 'two'$/);
  });

  it(`by default one per core, but each keeps ${MIN_ROWS_PER_WORKER} rows of the batch`, () => {
    delete process.env.MCLIP_WORKERS;
    const cores = availableParallelism();
    expect(resolveWorkers(undefined, 1024)).toBe(cores);
    expect(resolveWorkers(undefined, 8)).toBe(1);
    expect(resolveWorkers(undefined, 2 * MIN_ROWS_PER_WORKER)).toBe(Math.min(cores, 2));
  });
});
