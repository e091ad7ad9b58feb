/**
 * Tensors derived from a module's weights for inference (exact folds such as BatchNorm into the
 * preceding conv, or a layer scale into the preceding linear), kept until a source changes.
 *
 * A source "changes" when it holds other data: `Variable.assign`, loading a checkpoint and every
 * optimiser step give a variable a new dataId, so the cache compares the sources' dataIds and
 * rebuilds on any difference. The module that owns the cache disposes it with itself.
 */
import * as tf from '../tf.js';

let held = 0;

/** Tensors currently held by all fold caches (for leak checks that count tensors around inference). */
export function heldByFoldCaches(): number {
  return held;
}

export class FoldCache {
  private keys: readonly object[] | null = null;
  private value: tf.Tensor[] | null = null;

  /**
   * The folded tensors of `sources`, built by `make` (in a tidy, kept outside any enclosing one) on
   * first use and after any source changed.
   */
  get(sources: readonly tf.Tensor[], make: () => tf.Tensor[]): tf.Tensor[] {
    const keys = this.keys;
    if (this.value != null && keys != null && keys.length === sources.length && sources.every((s, i) => s.dataId === keys[i])) return this.value;
    this.dispose();
    const made = tf.tidy(make);
    for (const t of made) tf.keep(t);
    this.value = made;
    held += made.length;
    this.keys = sources.map((s) => s.dataId);
    return made;
  }

  /** Whether something is cached. */
  get filled(): boolean {
    return this.value != null;
  }

  dispose(): void {
    if (this.value) {
      held -= this.value.length;
      tf.dispose(this.value);
    }
    this.value = null;
    this.keys = null;
  }
}

let foldsOn = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.MCLIP_INFERENCE_FOLDS !== '0';

/** Turns the inference folds on or off (default on; MCLIP_INFERENCE_FOLDS=0 starts off). Returns the previous setting. */
export function setInferenceFolds(on: boolean): boolean {
  const prev = foldsOn;
  foldsOn = on;
  return prev;
}

/**
 * Whether a module may run its folded inference form: folds on, eval mode, no gradient being
 * recorded (folded tensors are constants), and no hooks in its subtree (they must see every
 * submodule run).
 */
export function foldsApply(m: { training: boolean; hasHooks(): boolean }): boolean {
  return foldsOn && !m.training && tf.engine().state.gradientDepth === 0 && !m.hasHooks();
}
