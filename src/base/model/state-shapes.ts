import { MclipError } from '../../errors.js';
import type { StateDict } from '../io/tensor-data.js';

/**
 * Shapes of a state dict's keys, read for config inference (`config-inference.ts` for our and the
 * ml-mobileclip layout, `open-clip/config.ts` for open_clip's): lookups, a required key with its rank,
 * the block indices under a prefix, and one-line errors naming the source file.
 */
export class StateShapes {
  constructor(
    private readonly sd: StateDict,
    readonly source: string,
    /** appended to the message of a missing required key (e.g. a hint about the file's kind) */
    private readonly missingHint = '',
  ) {}

  get(key: string): number[] | undefined {
    return this.sd.get(key)?.shape;
  }

  has(key: string): boolean {
    return this.sd.has(key);
  }

  /** The shape of the first of `keys` present (of rank `rank` when given); an error naming the first key when none is. */
  need(keys: string | string[], rank?: number): number[] {
    const list = typeof keys === 'string' ? [keys] : keys;
    for (const k of list) {
      const s = this.get(k);
      if (s === undefined) continue;
      if (rank !== undefined && s.length !== rank) this.fail(`'${k}' has shape [${s.join(', ')}], expected rank ${rank}`);
      return s;
    }
    return this.fail(`no '${list[0]}'${list.length > 1 ? ` (nor ${list.slice(1).map((k) => `'${k}'`).join(', ')})` : ''}${this.missingHint}`);
  }

  /** Sorted integers n of the keys `prefix<n>.…`. */
  indices(prefix: string): number[] {
    const out = new Set<number>();
    for (const k of this.sd.keys()) {
      if (!k.startsWith(prefix)) continue;
      const m = /^(\d+)\./.exec(k.slice(prefix.length));
      if (m) out.add(Number(m[1]));
    }
    return [...out].sort((a, b) => a - b);
  }

  /** True when some key starts with `prefix`. */
  any(prefix: string): boolean {
    return this.firstKey(prefix) !== undefined;
  }

  /** The first key under `prefix`, if any. */
  firstKey(prefix: string): string | undefined {
    for (const k of this.sd.keys()) if (k.startsWith(prefix)) return k;
    return undefined;
  }

  fail(msg: string): never {
    throw new MclipError(`${this.source}: ${msg}`);
  }
}
