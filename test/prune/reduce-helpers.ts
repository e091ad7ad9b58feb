/** Shared fixtures of the token-reduction tests: micro text towers, token rows, runs under hooks. */
import * as tf from '../../src/base/tf.js';
import type { HookHandle } from '../../src/base/nn/module.js';
import { TextTransformer } from '../../src/base/model/text-transformer.js';
import { TEXT_TOKENS } from '../../src/base/model/text-context.js';
import type { TextConfig } from '../../src/base/model/configs.js';
import { Initializer } from '../../src/base/nn/init.js';
import { afterAll } from 'vitest';
import { MICRO_CONTEXT, microConfig } from '../micro-config.js';
import { microTokens } from '../model/helpers.js';

export const S = MICRO_CONTEXT;

/** Token rows: SOT, words, EOT at `eot[b]`, zero padding (the same words for the same row content). */
export const tokens = (eot: number[]): tf.Tensor2D => microTokens(eot, 'length');

/** A mixed-length batch: EOT indices of four captions. */
export const MIXED = [3, 6, 9, 4];

export type Kind = 'causal' | 'non-causal' | 'mct';

/** Micro text towers with `layers` transformer layers: causal `base` (tiny_base), non-causal `base`, `mct` (RepMixer, encoders, RepMixer). */
export function makeTower(kind: Kind, layers = 3): TextTransformer {
  const cfg: TextConfig = microConfig(kind === 'mct' ? 'mobileclip_tiny' : 'mobileclip_tiny_base').text;
  cfg.nTransformerLayers = layers;
  if (kind === 'non-causal') cfg.causalMasking = false;
  const t = new TextTransformer(cfg, 64, { init: new Initializer(7) }).eval();
  // The RepMixer layer scales start at 1e-5, which would hide what the conv blocks do.
  for (const [name, p] of t.namedParams()) if (name.endsWith('layer_scale')) p.variable.assign(tf.fill(p.variable.shape, 0.5));
  return t;
}

/** A lazily built tower per kind (`layers` transformer layers), all disposed after the file's tests. */
export function towerCache(layers = 3): (kind: Kind) => TextTransformer {
  const towers = new Map<Kind, TextTransformer>();
  afterAll(() => towers.forEach((t) => t.dispose()));
  return (kind) => {
    let t = towers.get(kind);
    if (!t) towers.set(kind, (t = makeTower(kind, layers)));
    return t;
  };
}

/** Output of the tower with `install` applied (hooks removed afterwards). */
export function runWith(t: TextTransformer, ids: tf.Tensor2D, install: (t: TextTransformer) => HookHandle = () => ({ remove: () => {} })): Float32Array {
  const h = install(t);
  try {
    return tf.tidy(() => Float32Array.from(t.forward(ids).dataSync()));
  } finally {
    h.remove();
  }
}

/** Each caption alone, outputs concatenated. */
export function perCaption(t: TextTransformer, eot: number[], install: (t: TextTransformer) => HookHandle): Float32Array {
  const parts = eot.map((e) => {
    const ids = tokens([e]);
    try {
      return runWith(t, ids, install);
    } finally {
      ids.dispose();
    }
  });
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((o, p) => (out.set(p, o), o + p.length), 0);
  return out;
}

/** What the final LayerNorm sees: sequence length, the state's EOT indices and positions, and the features (kept; caller disposes). */
export interface FinalView {
  n: number;
  eot: number[];
  positions: number[][] | null;
  sizes: number[][] | null;
  features: tf.Tensor;
}

export function finalView(t: TextTransformer, ids: tf.Tensor2D, install: (t: TextTransformer) => HookHandle): FinalView & { out: Float32Array } {
  const seen: FinalView[] = [];
  const h = t.finalLayerNorm.registerForwardHook((_m, x, y, ctx) => {
    const s = ctx!.require(TEXT_TOKENS);
    seen.push({
      n: x.shape[1] as number,
      eot: Array.from(s.eot.dataSync()),
      positions: s.positions ? (s.positions.arraySync() as number[][]) : null,
      sizes: s.sizes ? (s.sizes.arraySync() as number[][]) : null,
      features: tf.keep(y.clone()),
    });
  });
  let out: Float32Array;
  try {
    out = runWith(t, ids, install);
  } finally {
    h.remove();
  }
  if (seen.length !== 1) throw new Error(`final LayerNorm reached ${seen.length} times`);
  return { ...seen[0], out };
}

/** The projected EOT-style rows of features [B, N, C] at `idx[b]`. */
export function projectRows(t: TextTransformer, features: tf.Tensor, idx: number[]): Float32Array {
  return tf.tidy(() => Float32Array.from(tf.stack(idx.map((e, b) => features.slice([b, e, 0], [1, 1, -1]).reshape([-1]))).matMul(t.projection).dataSync()));
}
