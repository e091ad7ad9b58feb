/**
 * Which ONNX ops a module becomes: emitters registered per layer class, and attention-kernel emitters
 * registered per kernel name. The built-in layers register theirs in `./emitters/`; a plug-in
 * (src/<method>/) registers its own layers and kernels the same way, once, at import.
 *
 * A module's emitter is the one registered for its class or, failing that, for the nearest ancestor
 * class (a subclass exports like its parent unless it registers its own).
 */
import { MclipError } from '../errors.js';
import type { Module, ModuleClass } from '../base/nn/module.js';
import type { OnnxEmitter } from './emit.js';
import type { AttentionParams } from '../base/nn/attention.js';

/** Layout of a channel-first value: NCHW maps ('2d') or [B, C, S] sequences ('1d', the text RepMixer blocks). */
export type ConvLayout = '2d' | '1d';

/** Layout of a module's input: channel-first ('2d' NCHW, '1d' [B, C, S]) or 'tokens' [B, N, C] (channels last). */
export type EmitLayout = ConvLayout | 'tokens';

/**
 * Emits module `m` applied to the value `x` and returns the output value name. `name` is the module's
 * path, the prefix of its node and initializer names; `layout` the layout of `x`. Children are emitted
 * with `em.module(child, y, `${name}.<child>`, layout)`.
 */
export type EmitFn<M extends Module> = (em: OnnxEmitter, m: M, x: string, name: string, layout: EmitLayout) => string;

/** What an attention-kernel emitter receives (all on the ONNX side, value names). */
export interface AttentionInputs {
  /** Queries, already scaled by d^-1/2: [B, heads, N, d]. */
  q: string;
  /** Keys, transposed: [B, heads, d, N]. */
  kT: string;
  /** Values: [B, heads, N, d]. */
  v: string;
  /** Additive mask [N, N] (0 on and below the diagonal, -inf above) for causal attention, else null. */
  mask: string | null;
  heads: number;
  headDim: number;
  /** The module's kernel parameters (`kernelParams`, e.g. sigmoid attention's bias); empty for softmax. */
  params: AttentionParams;
}

/** Emits the kernel part of attention: q, kᵀ, v (and mask) → [B, heads, N, d]. `name` prefixes its nodes. */
export type AttentionEmitFn = (em: OnnxEmitter, a: AttentionInputs, name: string) => string;

const layerEmitters = new Map<unknown, EmitFn<Module>>();
const attentionEmitters = new Map<string, AttentionEmitFn>();
/** The functions as registered (the map holds type-checking wrappers), for idempotent re-registration. */
const registered = new Map<unknown, unknown>();

/**
 * Registers how modules of class `cls` (and of subclasses without their own emitter) are exported.
 * Registering another function for a class that already has one throws.
 */
export function registerEmitter<M extends Module>(cls: ModuleClass<M>, fn: EmitFn<M>): void {
  const old = registered.get(cls);
  if (old === fn) return;
  if (old) throw new MclipError(`export: an ONNX emitter for ${cls.name} is already registered`);
  registered.set(cls, fn);
  layerEmitters.set(cls, (em, m, x, name, layout) => {
    if (!(m instanceof cls)) throw new MclipError(`export: ${name}: the ${cls.name} emitter got a ${m.constructor.name}`);
    return fn(em, m, x, name, layout);
  });
}

/**
 * `registerEmitter` for a channel-first layer (convs, BatchNorm, SE …): `fn` sees '2d' or '1d'; the layer
 * met on a [B, N, C] token sequence fails with an error naming its path.
 */
export function registerChannelFirstEmitter<M extends Module>(cls: ModuleClass<M>, fn: (em: OnnxEmitter, m: M, x: string, name: string, layout: ConvLayout) => string): void {
  registerEmitter(cls, (em, m, x, name, layout) => fn(em, m, x, name, em.convLayout(layout, name)));
}

/** The emitter of `m`'s class or its nearest registered ancestor class, or null. */
export function emitterFor(m: Module): EmitFn<Module> | null {
  for (let p = Object.getPrototypeOf(m) as object | null; p; p = Object.getPrototypeOf(p) as object | null) {
    const fn = layerEmitters.get((p as { constructor?: unknown }).constructor);
    if (fn) return fn;
  }
  return null;
}

/** Registers the ONNX form of the attention kernel `kernelName` (see `registerAttentionKernel`). */
export function registerAttentionEmitter(kernelName: string, fn: AttentionEmitFn): void {
  const old = attentionEmitters.get(kernelName);
  if (old && old !== fn) throw new MclipError(`export: an ONNX emitter for the attention kernel '${kernelName}' is already registered`);
  attentionEmitters.set(kernelName, fn);
}

/** The emitter of attention kernel `kernelName`; throws a one-line error naming the kernel and `path` when none is registered. */
export function attentionEmitter(kernelName: string, path: string): AttentionEmitFn {
  const fn = attentionEmitters.get(kernelName);
  if (!fn) {
    throw new MclipError(
      `export: ${path} uses the attention kernel '${kernelName}', which has no ONNX emitter (registerAttentionEmitter; registered: ${[...attentionEmitters.keys()].join(', ')})`,
    );
  }
  return fn;
}
