/**
 * Per-forward state that travels with the hidden states through `Module.call` (e.g. the text tower's
 * token ids, end-of-text index, kept positions and token sizes). Values are keyed by typed keys, so a
 * plug-in can add its own state without the core knowing about it.
 */

/** A typed key of a `ForwardContext` value; compare by identity. */
export class ContextKey<T> {
  /** Phantom field: ties the key to its value type. */
  declare readonly valueType: T;

  constructor(readonly name: string) {}
}

export class ForwardContext {
  private readonly values = new Map<ContextKey<unknown>, unknown>();

  get<T>(key: ContextKey<T>): T | undefined {
    return this.values.get(key) as T | undefined;
  }

  /** The value under `key`; throws when the forward pass did not set it. */
  require<T>(key: ContextKey<T>): T {
    if (!this.values.has(key)) throw new Error(`forward context has no '${key.name}'`);
    return this.values.get(key) as T;
  }

  set<T>(key: ContextKey<T>, value: T): void {
    this.values.set(key, value);
  }

  has(key: ContextKey<unknown>): boolean {
    return this.values.has(key);
  }
}
