/**
 * How a layer's MACs are counted: cost functions registered per layer class, and the attention
 * MACs per kernel name. The built-in layers register theirs in ./cost-layers.ts; a plug-in
 * (src/<method>/) registers its own layers and attention kernels the same way, once, at import.
 *
 * A module's cost function is the one registered for its class or, failing that, for the nearest
 * ancestor class (a subclass counts like its parent unless it registers its own).
 */
import { MclipError } from '../errors.js';
import type { Module, ModuleClass } from '../base/nn/module.js';
import type { MacRecord, MacScaling, Tower } from './cost.js';

/** What a cost function learns besides the module and its output shape. */
export interface CostInfo {
  /** Dotted module path (the record's name). */
  name: string;
  /** The tower the record belongs to. */
  tower: Tower;
  /** Batch of the profiled forward (the output shape's leading axis); records are per sample. */
  batch: number;
}

/**
 * MACs per sample of module `m` whose output had `outputShape` in the profiled forward, or null when
 * it costs nothing to count. The record carries `info.name` and `info.tower`.
 */
export type CostFn<M extends Module> = (m: M, outputShape: number[], info: CostInfo) => MacRecord | null;

/** An attention kernel's share of an attention layer (q/k/v/out projections are Linear records of their own). */
export interface AttentionShape {
  heads: number;
  /** Tokens N (queries = keys). */
  tokens: number;
  headDim: number;
  causal: boolean;
}

/** MACs per sample of the kernel part of one attention layer. */
export type AttentionCostFn = (a: AttentionShape) => number;

const layerCosts = new Map<unknown, CostFn<Module>>();
const registered = new Map<unknown, unknown>();
const attentionCosts = new Map<string, { fn: AttentionCostFn; scaling: MacScaling }>();

/**
 * Registers how modules of class `cls` (and of subclasses without their own) are counted. Registering
 * another function for a class that already has one throws.
 */
export function registerCost<M extends Module>(cls: ModuleClass<M>, fn: CostFn<M>): void {
  const old = registered.get(cls);
  if (old === fn) return;
  if (old) throw new MclipError(`cost: a MAC count for ${cls.name} is already registered`);
  registered.set(cls, fn);
  layerCosts.set(cls, (m, shape, info) => {
    if (!(m instanceof cls)) throw new MclipError(`cost: ${info.name}: the ${cls.name} count got a ${m.constructor.name}`);
    return fn(m, shape, info);
  });
}

/** The cost function of `m`'s class or its nearest registered ancestor class, or null. */
export function costFor(m: Module): CostFn<Module> | null {
  for (let p = Object.getPrototypeOf(m) as object | null; p; p = Object.getPrototypeOf(p) as object | null) {
    const fn = layerCosts.get((p as { constructor?: unknown }).constructor);
    if (fn) return fn;
  }
  return null;
}

/**
 * Registers the MACs of attention kernel `kernelName` (see `registerAttentionKernel`); `scaling` says
 * how they grow with the tokens (default 'tokens2', as softmax's N×N products).
 */
export function registerAttentionCost(kernelName: string, fn: AttentionCostFn, opts: { scaling?: MacScaling } = {}): void {
  const old = attentionCosts.get(kernelName);
  if (old && old.fn !== fn) throw new MclipError(`cost: a MAC count for the attention kernel '${kernelName}' is already registered`);
  attentionCosts.set(kernelName, { fn, scaling: opts.scaling ?? 'tokens2' });
}

/**
 * The 'attention' record of a layer at `info.name` running kernel `kernelName` on `a`; throws a one-line
 * error naming the kernel and the path when the kernel has no registered count.
 */
export function attentionRecord(kernelName: string, a: AttentionShape, info: CostInfo): MacRecord {
  const c = attentionCosts.get(kernelName);
  if (!c) {
    throw new MclipError(
      `cost: ${info.name} uses the attention kernel '${kernelName}', which has no MAC count (registerAttentionCost; registered: ${[...attentionCosts.keys()].join(', ')})`,
    );
  }
  return { name: info.name, tower: info.tower, kind: 'attention', macs: c.fn(a), tokens: a.tokens, scaling: c.scaling };
}
