import * as tf from '../tf.js';
import { MclipError } from '../../errors.js';
import type { Module, Param } from '../nn/module.js';
import { fastAdamW } from '../nn/fast-ops.js';

export interface AdamWOptions {
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /**
   * Which parameters get no weight decay. Default: each parameter's `noDecay` flag (set by the
   * model; for MobileCLIP it equals `openClipExclude`, checked in test/train).
   */
  exclude?: (name: string, p: Param) => boolean;
  /** Extra parameter groups beside the model's trainable parameters. */
  groups?: readonly ParamGroup[];
}

/**
 * open_clip's rule (`main.py`): no weight decay for parameters with PyTorch ndim < 2 or whose
 * name contains 'bn', 'ln', 'bias' or 'logit_scale'.
 */
export function openClipExclude(name: string, p: Pick<Param, 'torchShape'>): boolean {
  return p.torchShape.length < 2 || /bn|ln|bias|logit_scale/.test(name);
}

/**
 * An optimiser parameter group besides the model's own parameters (e.g. TinyCLIP's pruning masks and
 * Lagrange multipliers). Its variables must be trainable `tf.Variable`s that belong to no other group
 * and not to the model. Weight decay applies to every variable of the group (no open_clip exclusion).
 */
export interface ParamGroup {
  /** Group name: letters, digits, `_` or `-`; not `model` (the model's own group). Optimiser state keys are `<name>.<index>.exp_avg` / `.exp_avg_sq`. */
  name: string;
  variables: tf.Variable[];
  /** Learning rate. Constant unless `schedule` is set; a plug-in may change it between steps (`optimizer.group(name).lr`), it is saved with checkpoints. */
  lr: number;
  weightDecay: number;
  /** Gradient ascent: the group maximises the loss (its gradients are negated before the Adam update, as TinyCLIP's multipliers with a negative lr). Decoupled weight decay still shrinks towards 0. */
  ascent?: boolean;
  /** Trainer only: follow the model's warm-up + cosine schedule (lr · lrAt(step) / peak lr). Default false: constant lr. */
  schedule?: boolean;
}

/** Name of the optimiser group that holds the model's own parameters. */
export const MODEL_GROUP = 'model';

interface Slot {
  /** State key prefix: the parameter name (model group) or `<group>.<index>`. */
  key: string;
  variable: tf.Variable;
  decay: boolean;
  m: tf.Variable;
  v: tf.Variable;
}

/** One optimiser group as held by AdamW; `lr` is the rate of the next update. */
export interface OptimizerGroup {
  readonly name: string;
  lr: number;
  /** The group's configured lr (ParamGroup.lr; the model group: AdamWOptions.lr). */
  readonly baseLr: number;
  readonly weightDecay: number;
  readonly ascent: boolean;
  readonly schedule: boolean;
  readonly variables: readonly tf.Variable[];
}

interface Group extends OptimizerGroup {
  slots: Slot[];
}

const GROUP_NAME = /^[A-Za-z0-9_-]+$/;

/**
 * AdamW as torch.optim.AdamW (decoupled weight decay: p ← p − lr·wd·p, then the Adam step with
 * bias correction). The model's trainable parameters form the group `model`: parameters flagged
 * `noDecay` (norms, biases, gains, logit scale — the open_clip convention) get no weight decay.
 * Extra `groups` have their own lr, weight decay and direction (`ascent`). All groups share the
 * step count (bias correction). State is kept per parameter name (model) or `<group>.<index>`, so
 * it can be saved and restored with the model.
 */
export class AdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  /** Weight decay of the model group. */
  readonly weightDecay: number;
  step = 0;
  private readonly groupList: Group[];

  constructor(model: Module, opts: AdamWOptions) {
    this.beta1 = opts.beta1 ?? 0.9;
    this.beta2 = opts.beta2 ?? 0.999;
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.01;
    const exclude = opts.exclude ?? ((_: string, p: Param) => p.noDecay);
    // In a tidy, so the zero tensors the moments start from are released (the variables keep their data).
    const slot = (key: string, variable: tf.Variable, decay: boolean): Slot =>
      tf.tidy(() => ({
        key,
        variable,
        decay,
        m: tf.variable(tf.zerosLike(variable), false),
        v: tf.variable(tf.zerosLike(variable), false),
      }));
    const modelSlots = model
      .namedParams()
      .filter(([, p]) => p.trainable)
      .map(([name, p]) => slot(name, p.variable, !exclude(name, p)));
    const seen = new Set(modelSlots.map((s) => s.variable.name));
    const names = new Set<string>([MODEL_GROUP]);
    const keys = new Set(modelSlots.map((s) => s.key));
    const extra: Group[] = [];
    try {
      for (const g of opts.groups ?? []) {
        if (!GROUP_NAME.test(g.name)) throw new MclipError(`AdamW: parameter group name '${g.name}' must match ${GROUP_NAME}`);
        if (names.has(g.name)) throw new MclipError(`AdamW: parameter group name '${g.name}' is ${g.name === MODEL_GROUP ? 'reserved' : 'used twice'}`);
        names.add(g.name);
        if (!(Number.isFinite(g.lr) && Number.isFinite(g.weightDecay))) throw new MclipError(`AdamW: group '${g.name}' needs a finite lr and weightDecay`);
        const slots: Slot[] = [];
        extra.push({ name: g.name, lr: g.lr, baseLr: g.lr, weightDecay: g.weightDecay, ascent: g.ascent ?? false, schedule: g.schedule ?? false, variables: g.variables.slice(), slots });
        g.variables.forEach((v, i) => {
          if (!v.trainable) throw new MclipError(`AdamW: group '${g.name}' variable ${i} (${v.name}) is not trainable`);
          if (seen.has(v.name)) throw new MclipError(`AdamW: group '${g.name}' variable ${i} (${v.name}) is already optimised (model or another group)`);
          seen.add(v.name);
          const key = `${g.name}.${i}`;
          if (keys.has(key)) throw new MclipError(`AdamW: group '${g.name}' state key '${key}' collides with a model parameter name`);
          keys.add(key);
          slots.push(slot(key, v, true));
        });
      }
    } catch (e) {
      for (const s of [...modelSlots, ...extra.flatMap((g) => g.slots)]) tf.dispose([s.m, s.v]);
      throw e;
    }
    const modelGroup: Group = {
      name: MODEL_GROUP,
      lr: opts.lr,
      baseLr: opts.lr,
      weightDecay: this.weightDecay,
      ascent: false,
      schedule: true,
      variables: modelSlots.map((s) => s.variable),
      slots: modelSlots,
    };
    this.groupList = [modelGroup, ...extra];
  }

  /** Learning rate of the model group. */
  get lr(): number {
    return this.groupList[0].lr;
  }

  set lr(v: number) {
    this.groupList[0].lr = v;
  }

  /** All groups, the model group first. */
  get groups(): readonly OptimizerGroup[] {
    return this.groupList;
  }

  /** The group `name` (`model` for the model's parameters); throws when absent. */
  group(name: string): OptimizerGroup {
    const g = this.groupList.find((x) => x.name === name);
    if (!g) throw new MclipError(`AdamW: no parameter group '${name}'`);
    return g;
  }

  /** Parameter names of the model group that receive weight decay (in optimiser order). */
  decayedNames(): string[] {
    return this.groupList[0].slots.filter((s) => s.decay).map((s) => s.key);
  }

  /** Every optimised variable: the model's trainable parameters, then each extra group's (tf.variableGrads order). */
  get variables(): tf.Variable[] {
    return this.groupList.flatMap((g) => g.slots.map((s) => s.variable));
  }

  /** Applies one update with gradients keyed by variable name (tf.variableGrads output); variables without a gradient are left alone. */
  apply(grads: Record<string, tf.Tensor>): void {
    this.step += 1;
    const t = this.step;
    const bc1 = 1 - this.beta1 ** t;
    const bc2 = 1 - this.beta2 ** t;
    for (const grp of this.groupList) {
      for (const s of grp.slots) {
        const grad = grads[s.variable.name];
        if (!grad) continue;
        const decay = s.decay && grp.weightDecay > 0 ? 1 - grp.lr * grp.weightDecay : 1;
        const fast = fastAdamW(s.variable, grad, s.m, s.v, { sign: grp.ascent ? -1 : 1, beta1: this.beta1, beta2: this.beta2, decay, bc1, bc2, eps: this.eps, lr: grp.lr });
        if (fast) {
          s.variable.assign(fast[0]);
          s.m.assign(fast[1]);
          s.v.assign(fast[2]);
          tf.dispose(fast);
          continue;
        }
        tf.tidy(() => {
          const g = grp.ascent ? grad.neg() : grad;
          const m = s.m.mul(this.beta1).add(g.mul(1 - this.beta1));
          const v = s.v.mul(this.beta2).add(g.square().mul(1 - this.beta2));
          s.m.assign(m);
          s.v.assign(v);
          let p: tf.Tensor = s.variable;
          if (s.decay && grp.weightDecay > 0) p = p.mul(1 - grp.lr * grp.weightDecay);
          const update = m.div(bc1).div(tf.sqrt(v.div(bc2)).add(this.eps)).mul(grp.lr);
          s.variable.assign(p.sub(update));
        });
      }
    }
  }

  /** Optimiser moments as named tensors (for checkpoints): `<param>.exp_avg[_sq]` (model), `<group>.<index>.exp_avg[_sq]` (extra groups). */
  state(): Map<string, tf.Tensor> {
    const out = new Map<string, tf.Tensor>();
    for (const g of this.groupList) {
      for (const s of g.slots) {
        out.set(`${s.key}.exp_avg`, s.m);
        out.set(`${s.key}.exp_avg_sq`, s.v);
      }
    }
    return out;
  }

  /** The extra groups' variables keyed `<group>.<index>` (they are not model parameters, so checkpoints store them with the optimiser). */
  groupVariables(): Map<string, tf.Variable> {
    return new Map(this.groupList.slice(1).flatMap((g) => g.slots.map((s): [string, tf.Variable] => [s.key, s.variable])));
  }

  /** Restores state saved by `state()` (values as flat float arrays). */
  loadState(step: number, values: Map<string, Float32Array>): void {
    this.step = step;
    for (const g of this.groupList) {
      for (const s of g.slots) {
        const m = values.get(`${s.key}.exp_avg`);
        const v = values.get(`${s.key}.exp_avg_sq`);
        tf.tidy(() => {
          if (m) s.m.assign(tf.tensor(m, s.m.shape));
          if (v) s.v.assign(tf.tensor(v, s.v.shape));
        });
      }
    }
  }

  dispose(): void {
    for (const g of this.groupList) {
      for (const s of g.slots) {
        s.m.dispose();
        s.v.dispose();
      }
    }
  }
}

/** Scales gradients so their global L2 norm is at most `maxNorm` (torch.nn.utils.clip_grad_norm_). Returns the norm before clipping. */
export function clipGradNorm(grads: Record<string, tf.Tensor>, maxNorm: number): number {
  const norm = tf.tidy(() => tf.sqrt(tf.addN(Object.values(grads).map((g) => g.square().sum()))).dataSync()[0]);
  if (norm > maxNorm) {
    const f = maxNorm / (norm + 1e-6);
    for (const k of Object.keys(grads)) {
      const old = grads[k];
      grads[k] = tf.tidy(() => old.mul(f));
      old.dispose();
    }
  }
  return norm;
}
