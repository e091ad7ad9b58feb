import * as tf from '../tf.js';

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

/**
 * A small PyTorch-style module: named children and named parameters whose dotted paths mirror
 * the official state-dict keys. Forward passes are plain functions of tf tensors.
 */
export abstract class Module {
  protected readonly childModules = new Map<string, Module>();
  protected readonly ownParams = new Map<string, Param>();
  training = false;

  /** Registers (or replaces) a child module under `name`. */
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

  child(name: string): Module | undefined {
    return this.childModules.get(name);
  }

  children(): Array<[string, Module]> {
    return [...this.childModules.entries()];
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

  /** Frees every variable owned by this module tree. */
  dispose(): void {
    for (const [, p] of this.ownParams) p.variable.dispose();
    this.ownParams.clear();
    for (const [, m] of this.childModules) m.dispose();
    this.childModules.clear();
  }

  /**
   * Runs `forward` and reports the output to an active activation capture (used by parity tests
   * and `mclip embed --capture`). Subclasses implement `forward`, callers use `call`.
   */
  call(x: tf.Tensor): tf.Tensor {
    const y = this.forward(x);
    const hook = activeCapture?.get(this);
    if (hook) hook(y);
    return y;
  }

  abstract forward(x: tf.Tensor): tf.Tensor;

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
    this.addModule(String(this.childModules.size), m);
  }

  /** Appends a child under an explicit name (official nn.Sequential built with add_module). */
  append(name: string, m: Module): void {
    this.addModule(name, m);
  }

  get length(): number {
    return this.childModules.size;
  }

  at(i: number): Module {
    const m = this.childModules.get(String(i));
    if (!m) throw new RangeError(`Sequential has no module ${i}`);
    return m;
  }

  forward(x: tf.Tensor): tf.Tensor {
    let y = x;
    for (const [, m] of this.childModules) y = m.call(y);
    return y;
  }
}

let activeCapture: Map<Module, (y: tf.Tensor) => void> | null = null;

/** True while `withCapture` records activations (forward shortcuts must then run the full graph). */
export function captureActive(): boolean {
  return activeCapture !== null;
}

/**
 * Runs `fn` while recording the outputs of the modules named in `names` (paths relative to `root`).
 * Returns the recorded tensors (kept, caller disposes) alongside `fn`'s result.
 */
export function withCapture<T>(root: Module, names: string[], fn: () => T): { result: T; captured: Map<string, tf.Tensor> } {
  const byName = new Map(root.namedModules());
  const hooks = new Map<Module, (y: tf.Tensor) => void>();
  const captured = new Map<string, tf.Tensor>();
  for (const n of names) {
    const m = byName.get(n);
    if (!m) throw new Error(`no module named '${n}'`);
    hooks.set(m, (y) => {
      captured.set(n, tf.keep(y.clone()));
    });
  }
  const prev = activeCapture;
  activeCapture = hooks;
  try {
    const result = fn();
    return { result, captured };
  } finally {
    activeCapture = prev;
  }
}
