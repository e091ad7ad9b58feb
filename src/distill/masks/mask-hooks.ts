/**
 * What applying a mask set to a model shares between the towers (text-masks.ts, image-masks.ts): the hooks
 * installed under one root path, the current mask set the hooks read, `setMasks` (same layout only) and
 * `remove()`, which takes every hook off and runs the registered clean-ups (idempotent).
 */
import * as tf from '../../base/tf.js';
import { MclipError } from '../../errors.js';
import type { HookHandle, Module } from '../../base/nn/module.js';

export class AppliedMasks<S> {
  private current: S;
  private readonly shape: string;
  private readonly handles: HookHandle[] = [];
  private readonly cleanups: Array<() => void> = [];
  private live = true;

  /**
   * `check` validates a mask set (throws naming the first bad mask), `layout` names which masks a set holds;
   * hook paths are relative to `prefix` under `root`.
   */
  constructor(
    private readonly what: string,
    initial: S,
    private readonly check: (masks: S) => void,
    private readonly layout: (masks: S) => string,
    private readonly root: Module,
    private readonly prefix = '',
  ) {
    check(initial);
    this.current = initial;
    this.shape = layout(initial);
  }

  /** The mask set the hooks read now. */
  get masks(): S {
    return this.current;
  }

  /** Makes the hooks read `next` from the next forward on; same layout (which masks are present) as applied. */
  setMasks(next: S): void {
    if (!this.live) throw new MclipError(`${this.what}: setMasks after remove()`);
    this.check(next);
    const l = this.layout(next);
    if (l !== this.shape) throw new MclipError(`${this.what}: setMasks with another layout (${l}) than applied (${this.shape}); remove() and apply again`);
    this.current = next;
  }

  /** The module at `path` (relative to the prefix). */
  module(path: string): Module {
    return this.root.get(`${this.prefix}${path}`);
  }

  /** A post-forward hook on `path` replacing the output by fn(input, output) (run in a tidy). */
  post(path: string, fn: (x: tf.Tensor, y: tf.Tensor) => tf.Tensor): void {
    this.handles.push(this.module(path).registerForwardHook((_m, x, y) => tf.tidy(() => fn(x, y))));
  }

  /** A pre-forward hook on `path` replacing the input by fn(input) (run in a tidy). */
  pre(path: string, fn: (x: tf.Tensor) => tf.Tensor): void {
    this.handles.push(this.module(path).registerForwardPreHook((_m, x) => tf.tidy(() => fn(x))));
  }

  /** Something `remove()` undoes besides the hooks (run in reverse order of registration). */
  onRemove(fn: () => void): void {
    this.cleanups.push(fn);
  }

  /** Takes every hook off and runs the clean-ups (idempotent). */
  remove(): void {
    if (!this.live) return;
    this.live = false;
    for (const h of this.handles) h.remove();
    this.handles.length = 0;
    for (const c of this.cleanups.reverse()) c();
    this.cleanups.length = 0;
  }
}
