import * as tf from '../tf.js';

/**
 * Per-forward state that travels with the hidden states through `Module.call` (e.g. the text tower's
 * token ids, end-of-text index, kept positions and token sizes). Values are keyed by typed keys, so a
 * plug-in can add its own state without the core knowing about it.
 *
 * Tensor lifetime: a value set by a hook is usually made inside the `tf.tidy` of the module that runs the
 * hook, and that tidy would free it while later modules (or the model's pooling) still read it. A key names
 * the tensors of its value that belong to the pass (`ContextKey`'s `tensorsOf`); `set` keeps them beyond
 * every enclosing tidy, and `endPass` frees them. The model that runs the pass ends it (the text tower at
 * the end of its forward), so tensors set during a pass live exactly as long as the pass.
 */

/** A typed key of a `ForwardContext` value; compare by identity. */
export class ContextKey<T> {
  /** Phantom field: ties the key to its value type. */
  declare readonly valueType: T;

  /**
   * @param tensorsOf the tensors of a value that the context owns once the value is set (kept beyond every
   *   enclosing tidy, freed by `endPass`). Default: none (the value's tensors belong to whoever made them).
   */
  constructor(
    readonly name: string,
    readonly tensorsOf: (value: T) => ReadonlyArray<tf.Tensor | null> = () => [],
  ) {}
}

export class ForwardContext {
  /** Values by key (keys compared by identity; `get` / `set` tie each value to its key's type). */
  private readonly values = new Map<object, unknown>();
  private readonly owned = new Set<tf.Tensor>();

  get<T>(key: ContextKey<T>): T | undefined {
    return this.values.get(key) as T | undefined;
  }

  /** The value under `key`; throws when the forward pass did not set it. */
  require<T>(key: ContextKey<T>): T {
    if (!this.values.has(key)) throw new Error(`forward context has no '${key.name}'`);
    return this.values.get(key) as T;
  }

  /** Sets `value` under `key`; the tensors `key.tensorsOf(value)` now belong to the pass (see `own`). */
  set<T>(key: ContextKey<T>, value: T): void {
    for (const t of key.tensorsOf(value)) if (t) this.own(t);
    this.values.set(key, value);
  }

  has<T>(key: ContextKey<T>): boolean {
    return this.values.has(key);
  }

  /** Keeps `t` beyond every enclosing `tf.tidy` until the pass ends (`endPass` frees it); returns it. Idempotent. */
  own<T extends tf.Tensor>(t: T): T {
    if (!this.owned.has(t)) {
      tf.keep(t);
      this.owned.add(t);
    }
    return t;
  }

  /** Number of tensors the pass owns (for leak checks). */
  get ownedCount(): number {
    return this.owned.size;
  }

  /** Ends the pass: frees every tensor it owns and forgets every value (the context can start a new pass). */
  endPass(): void {
    tf.dispose([...this.owned]);
    this.owned.clear();
    this.values.clear();
  }
}
