import * as tf from '../tf.js';
import { FoldCache } from './fold-cache.js';
import type { ForwardContext } from './context.js';

/**
 * How a parameter is laid out in TF.js compared with the official PyTorch tensor.
 * - `plain`: same element order, possibly another shape (e.g. layer scale [C,1,1] ↔ [C]).
 * - `conv`: PyTorch OIHW [Co,Ci,kh,kw] ↔ TF.js HWIO [kh,kw,Ci,Co] (groups = 1).
 * - `dwconv`: PyTorch [Ci·m,1,kh,kw] ↔ TF.js depthwise [kh,kw,Ci,m] (groups = Ci, PyTorch channel o = c·m + j).
 * - `linear`: PyTorch [out,in] ↔ TF.js [in,out] (so the forward is a plain, untransposed matMul).
 */
export type Layout = 'plain' | 'conv' | 'dwconv' | 'linear';

export interface Param {
  variable: tf.Variable;
  /** Shape of the official PyTorch tensor. */
  torchShape: number[];
  layout: Layout;
  /** false for buffers (BatchNorm running statistics, counters). */
  trainable: boolean;
  /** Optimiser hint: no weight decay on norms, biases, gains, logit scale (open_clip convention). */
  noDecay: boolean;
  /** dtype of the official tensor (int64 for num_batches_tracked). */
  torchDtype: 'float32' | 'int64';
}

/** Converts a TF.js-layout tensor to the PyTorch layout (returns a new tensor). */
export function toTorchLayout(p: Param, value: tf.Tensor = p.variable): tf.Tensor {
  return tf.tidy(() => {
    switch (p.layout) {
      case 'plain':
        return value.reshape(p.torchShape);
      case 'conv':
        return value.transpose([3, 2, 0, 1]);
      case 'dwconv': {
        const [kh, kw, ci, m] = value.shape;
        return value.transpose([2, 3, 0, 1]).reshape([ci * m, 1, kh, kw]);
      }
      case 'linear':
        return value.transpose([1, 0]);
    }
  });
}

/** Converts a PyTorch-layout tensor (already checked to have `p.torchShape`) to the TF.js layout. */
export function fromTorchLayout(p: Param, value: tf.Tensor): tf.Tensor {
  const target = p.variable.shape;
  return tf.tidy(() => {
    switch (p.layout) {
      case 'plain':
        return value.reshape(target);
      case 'conv':
        return value.transpose([2, 3, 1, 0]);
      case 'dwconv': {
        const [kh, kw, ci, m] = target;
        return value.reshape([ci, m, kh, kw]).transpose([2, 3, 0, 1]);
      }
      case 'linear':
        return value.transpose([1, 0]);
    }
  });
}

let variableCounter = 0;

/** A constructor of a module class (for typed child look-ups). */
export type ModuleClass<M extends Module> = abstract new (...args: never[]) => M;

/** Runs before a module's forward; may return a replacement input. */
export type ForwardPreHook = (module: Module, input: tf.Tensor, ctx: ForwardContext | undefined) => tf.Tensor | void;
/** Runs after a module's forward; may return a replacement output. */
export type ForwardHook = (module: Module, input: tf.Tensor, output: tf.Tensor, ctx: ForwardContext | undefined) => tf.Tensor | void;

/** What `register…Hook` returns: `remove()` takes the hook off again (idempotent). */
export interface HookHandle {
  remove(): void;
}

/** Number of hooks registered anywhere (0: `call` skips the hook machinery entirely). */
let liveHooks = 0;

/**
 * A small PyTorch-style module: named children and named parameters whose dotted paths mirror
 * the official state-dict keys. Forward passes are plain functions of tf tensors. The child map is
 * the only record of a module's children: typed accessors read it (`childAs`), so `replace` swaps a
 * child for every reader at once.
 */
export abstract class Module {
  private readonly childModules = new Map<string, Module>();
  protected readonly ownParams = new Map<string, Param>();
  private readonly preHooks: ForwardPreHook[] = [];
  private readonly postHooks: ForwardHook[] = [];
  private readonly foldCaches = new Map<string, FoldCache>();
  training = false;

  /** Registers (or replaces, disposing the old one) a child module under `name`. */
  protected addModule<M extends Module>(name: string, m: M): M {
    const old = this.childModules.get(name);
    if (old && old !== m) old.dispose();
    this.childModules.set(name, m);
    return m;
  }

  protected removeModule(name: string): void {
    const old = this.childModules.get(name);
    if (old) old.dispose();
    this.childModules.delete(name);
  }

  /** Registers a parameter (takes ownership of `value`). */
  protected addParam(
    name: string,
    value: tf.Tensor,
    opts: { layout?: Layout; torchShape?: number[]; trainable?: boolean; noDecay?: boolean; torchDtype?: 'float32' | 'int64' } = {},
  ): Param {
    const old = this.ownParams.get(name);
    if (old) old.variable.dispose();
    const trainable = opts.trainable ?? true;
    const variable = tf.variable(value, trainable, `mclip_${variableCounter++}_${name}`, value.dtype);
    value.dispose();
    const p: Param = {
      variable,
      torchShape: opts.torchShape ?? variable.shape.slice(),
      layout: opts.layout ?? 'plain',
      trainable,
      noDecay: opts.noDecay ?? variable.rank <= 1,
      torchDtype: opts.torchDtype ?? 'float32',
    };
    this.ownParams.set(name, p);
    return p;
  }

  protected removeParam(name: string): void {
    const old = this.ownParams.get(name);
    if (old) old.variable.dispose();
    this.ownParams.delete(name);
  }

  /** The child `name` as class `cls`; throws when it is absent or of another class. */
  protected childAs<M extends Module>(name: string, cls: ModuleClass<M>): M {
    const m = this.childModules.get(name);
    if (!m) throw new Error(`${this.constructor.name} has no child '${name}'`);
    if (!(m instanceof cls)) throw new Error(`${this.constructor.name}.${name} is a ${m.constructor.name}, expected a ${cls.name}`);
    return m;
  }

  /** The child `name` as class `cls`, or null when there is none. */
  protected optionalChildAs<M extends Module>(name: string, cls: ModuleClass<M>): M | null {
    return this.childModules.has(name) ? this.childAs(name, cls) : null;
  }

  /** The child `name` (any class); throws when absent. For forwards that only call it. */
  protected sub(name: string): Module {
    const m = this.childModules.get(name);
    if (!m) throw new Error(`${this.constructor.name} has no child '${name}'`);
    return m;
  }

  /** A trainable parameter or buffer of this module itself, by name; throws when absent. */
  protected param(name: string): tf.Variable {
    const p = this.ownParams.get(name);
    if (!p) throw new Error(`${this.constructor.name} has no parameter '${name}'`);
    return p.variable;
  }

  child(name: string): Module | undefined {
    return this.childModules.get(name);
  }

  children(): Array<[string, Module]> {
    return [...this.childModules.entries()];
  }

  /** The descendant at dotted `path` ('' is this module); throws naming the first missing part. */
  get(path: string): Module {
    if (path === '') return this;
    let m: Module = this;
    const parts = path.split('.');
    for (let i = 0; i < parts.length; i++) {
      const next = m.childModules.get(parts[i]);
      if (!next) {
        const at = parts.slice(0, i).join('.') || '(root)';
        const known = [...m.childModules.keys()];
        throw new Error(`no module '${path}': ${at} has no child '${parts[i]}' (children: ${known.length ? known.join(', ') : 'none'})`);
      }
      m = next;
    }
    return m;
  }

  /**
   * Puts `module` at dotted `path` in place of the module there (which is disposed; pass a module
   * that does not share its variables). The new module takes the old one's train/eval mode. Returns it.
   */
  replace<M extends Module>(path: string, module: M): M {
    if (path === '') throw new Error('replace: the root module cannot replace itself');
    const cut = path.lastIndexOf('.');
    const parent = this.get(cut < 0 ? '' : path.slice(0, cut));
    const name = path.slice(cut + 1);
    const old = this.get(path);
    module.train(old.training);
    return parent.addModule(name, module);
  }

  /** All parameters and buffers with their dotted names, depth first in registration order. */
  namedParams(prefix = ''): Array<[string, Param]> {
    const out: Array<[string, Param]> = [];
    for (const [n, p] of this.ownParams) out.push([prefix + n, p]);
    for (const [n, m] of this.childModules) out.push(...m.namedParams(`${prefix}${n}.`));
    return out;
  }

  /** All modules with their dotted names (this one is ''). */
  namedModules(prefix = ''): Array<[string, Module]> {
    const out: Array<[string, Module]> = [[prefix.replace(/\.$/, ''), this]];
    for (const [n, m] of this.childModules) out.push(...m.namedModules(`${prefix}${n}.`));
    return out;
  }

  /** Trainable variables (what an optimiser updates). */
  trainableVariables(): tf.Variable[] {
    return this.namedParams()
      .filter(([, p]) => p.trainable)
      .map(([, p]) => p.variable);
  }

  /** Number of trainable parameters. */
  numParams(): number {
    let n = 0;
    for (const [, p] of this.namedParams()) if (p.trainable) n += p.variable.size;
    return n;
  }

  /** Switches train/eval mode for this module and every descendant. */
  train(flag = true): this {
    this.training = flag;
    for (const [, m] of this.childModules) m.train(flag);
    return this;
  }

  eval(): this {
    return this.train(false);
  }

  /**
   * This module's cache `name` of tensors folded from its weights for inference (see FoldCache);
   * disposed with the module.
   */
  protected foldCache(name: string): FoldCache {
    let c = this.foldCaches.get(name);
    if (!c) {
      c = new FoldCache();
      this.foldCaches.set(name, c);
    }
    return c;
  }

  /** Frees every variable owned by this module tree and its fold caches (hooks are dropped too). */
  dispose(): void {
    for (const [, c] of this.foldCaches) c.dispose();
    this.foldCaches.clear();
    for (const [, p] of this.ownParams) p.variable.dispose();
    this.ownParams.clear();
    for (const [, m] of this.childModules) m.dispose();
    this.childModules.clear();
    liveHooks -= this.preHooks.length + this.postHooks.length;
    this.preHooks.length = 0;
    this.postHooks.length = 0;
  }

  /** Adds a hook run before every forward of this module; it may return a replacement input. */
  registerForwardPreHook(hook: ForwardPreHook): HookHandle {
    return this.addHook(this.preHooks, hook);
  }

  /** Adds a hook run after every forward of this module; it may return a replacement output. */
  registerForwardHook(hook: ForwardHook): HookHandle {
    return this.addHook(this.postHooks, hook);
  }

  private addHook<H>(list: H[], hook: H): HookHandle {
    list.push(hook);
    liveHooks++;
    let live = true;
    return {
      remove: () => {
        if (!live) return;
        live = false;
        const i = list.indexOf(hook);
        if (i >= 0) {
          list.splice(i, 1);
          liveHooks--;
        }
      },
    };
  }

  /** True when this module or a descendant has a hook (forward shortcuts that skip modules must then run the full graph). */
  hasHooks(): boolean {
    if (liveHooks === 0) return false;
    return this.namedModules().some(([, m]) => m.preHooks.length + m.postHooks.length > 0);
  }

  /** True when this module itself (not a descendant) has a hook. */
  hasOwnHooks(): boolean {
    return this.preHooks.length + this.postHooks.length > 0;
  }

  /**
   * Runs the pre-hooks, `forward` and the post-hooks. Subclasses implement `forward`, callers use
   * `call`. `ctx` is the per-forward state of the pass (see `ForwardContext`), handed to every hook
   * and passed on by modules that call children.
   */
  call(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    if (this.preHooks.length === 0 && this.postHooks.length === 0) return this.forward(x, ctx);
    let input = x;
    for (const h of [...this.preHooks]) input = h(this, input, ctx) ?? input;
    let y = this.forward(input, ctx);
    for (const h of [...this.postHooks]) y = h(this, input, y, ctx) ?? y;
    return y;
  }

  abstract forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor;

  /**
   * Folds train-time branches into inference layers in place (structural reparameterisation).
   * Modules without re-parameterisable branches keep the default no-op.
   */
  reparameterize(): void {
    /* no-op by default */
  }
}

/** A module that only holds parameters (no forward of its own). */
export class ParamHolder extends Module {
  forward(x: tf.Tensor): tf.Tensor {
    return x;
  }
}

/** Applies child modules in order; child names are '0', '1', … like torch.nn.Sequential. */
export class Sequential extends Module {
  constructor(modules: Module[] = []) {
    super();
    modules.forEach((m, i) => this.addModule(String(i), m));
  }

  push(m: Module): void {
    this.addModule(String(this.children().length), m);
  }

  /** Appends a child under an explicit name (official nn.Sequential built with add_module). */
  append(name: string, m: Module): void {
    this.addModule(name, m);
  }

  get length(): number {
    return this.children().length;
  }

  at(i: number): Module {
    const m = this.child(String(i));
    if (!m) throw new RangeError(`Sequential has no module ${i}`);
    return m;
  }

  /** Every child in order. */
  modules(): Module[] {
    return this.children().map(([, m]) => m);
  }

  forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    let y = x;
    for (const [, m] of this.children()) y = m.call(y, ctx);
    return y;
  }
}

/**
 * Runs `fn` while recording the outputs of the modules named in `names` (paths relative to `root`),
 * through removable forward hooks. Returns the recorded tensors (kept, caller disposes) alongside
 * `fn`'s result; the hooks are removed afterwards, whatever happens.
 */
export function withCapture<T>(root: Module, names: string[], fn: () => T): { result: T; captured: Map<string, tf.Tensor> } {
  const captured = new Map<string, tf.Tensor>();
  const handles: HookHandle[] = [];
  try {
    for (const n of names) {
      const m = root.get(n);
      handles.push(
        m.registerForwardHook((_m, _x, y) => {
          captured.get(n)?.dispose();
          captured.set(n, tf.keep(y.clone()));
        }),
      );
    }
    const result = fn();
    return { result, captured };
  } finally {
    for (const h of handles) h.remove();
  }
}
