import * as tf from '../tf.js';
import type { Module, Param } from '../nn/module.js';

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
}

/**
 * open_clip's rule (`main.py`): no weight decay for parameters with PyTorch ndim < 2 or whose
 * name contains 'bn', 'ln', 'bias' or 'logit_scale'.
 */
export function openClipExclude(name: string, p: Pick<Param, 'torchShape'>): boolean {
  return p.torchShape.length < 2 || /bn|ln|bias|logit_scale/.test(name);
}

interface Slot {
  name: string;
  variable: tf.Variable;
  decay: boolean;
  m: tf.Variable;
  v: tf.Variable;
}

/**
 * AdamW as torch.optim.AdamW (decoupled weight decay: p ← p − lr·wd·p, then the Adam step with
 * bias correction). Parameters flagged `noDecay` (norms, biases, gains, logit scale — the
 * open_clip convention) get no weight decay. State is kept per parameter name, so it can be
 * saved and restored with the model.
 */
export class AdamW {
  lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  step = 0;
  private readonly slots: Slot[];

  constructor(model: Module, opts: AdamWOptions) {
    this.lr = opts.lr;
    this.beta1 = opts.beta1 ?? 0.9;
    this.beta2 = opts.beta2 ?? 0.999;
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.01;
    const exclude = opts.exclude ?? ((_: string, p: Param) => p.noDecay);
    this.slots = model
      .namedParams()
      .filter(([, p]) => p.trainable)
      .map(([name, p]) => ({
        name,
        variable: p.variable,
        decay: !exclude(name, p),
        m: tf.variable(tf.zerosLike(p.variable), false),
        v: tf.variable(tf.zerosLike(p.variable), false),
      }));
  }

  /** Parameter names that receive weight decay (in optimiser order). */
  decayedNames(): string[] {
    return this.slots.filter((s) => s.decay).map((s) => s.name);
  }

  get variables(): tf.Variable[] {
    return this.slots.map((s) => s.variable);
  }

  /** Applies one update with gradients keyed by variable name (tf.variableGrads output). */
  apply(grads: Record<string, tf.Tensor>): void {
    this.step += 1;
    const t = this.step;
    const bc1 = 1 - this.beta1 ** t;
    const bc2 = 1 - this.beta2 ** t;
    for (const s of this.slots) {
      const g = grads[s.variable.name];
      if (!g) continue;
      tf.tidy(() => {
        const m = s.m.mul(this.beta1).add(g.mul(1 - this.beta1));
        const v = s.v.mul(this.beta2).add(g.square().mul(1 - this.beta2));
        s.m.assign(m);
        s.v.assign(v);
        let p: tf.Tensor = s.variable;
        if (s.decay && this.weightDecay > 0) p = p.mul(1 - this.lr * this.weightDecay);
        const update = m.div(bc1).div(tf.sqrt(v.div(bc2)).add(this.eps)).mul(this.lr);
        s.variable.assign(p.sub(update));
      });
    }
  }

  /** Optimiser state as named tensors (for checkpoints). */
  state(): Map<string, tf.Tensor> {
    const out = new Map<string, tf.Tensor>();
    for (const s of this.slots) {
      out.set(`${s.name}.exp_avg`, s.m);
      out.set(`${s.name}.exp_avg_sq`, s.v);
    }
    return out;
  }

  /** Restores state saved by `state()` (values as flat float arrays). */
  loadState(step: number, values: Map<string, Float32Array>): void {
    this.step = step;
    for (const s of this.slots) {
      const m = values.get(`${s.name}.exp_avg`);
      const v = values.get(`${s.name}.exp_avg_sq`);
      tf.tidy(() => {
        if (m) s.m.assign(tf.tensor(m, s.m.shape));
        if (v) s.v.assign(tf.tensor(v, s.v.shape));
      });
    }
  }

  dispose(): void {
    for (const s of this.slots) {
      s.m.dispose();
      s.v.dispose();
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
