import * as tf from '../tf.js';
import type { Module } from '../nn/module.js';
import { fromTorchLayout, toTorchLayout } from '../nn/module.js';
import type { StateDict, TensorData } from '../io/tensor-data.js';
import { toFloat32, numel } from '../io/tensor-data.js';
import { assertStateDictMatches } from '../io/state-dict-check.js';

/** Official (PyTorch) names and shapes of every parameter and buffer of `model`. */
export function expectedShapes(model: Module, prefix = ''): Map<string, number[]> {
  const m = new Map<string, number[]>();
  for (const [name, p] of model.namedParams(prefix)) m.set(name, p.torchShape);
  return m;
}

/**
 * Loads an official-layout state dict into `model`. Every key must be present with the right
 * shape and no extra keys may remain (a one-line error lists missing, unexpected and mis-shaped
 * keys with both shapes). Floating tensors of any precision are loaded as float32.
 */
export function loadStateDict(model: Module, sd: StateDict, source: string, opts: { prefix?: string } = {}): void {
  const prefix = opts.prefix ?? '';
  assertStateDictMatches(expectedShapes(model, prefix), sd, source);
  for (const [name, p] of model.namedParams(prefix)) {
    const t = sd.get(name) as TensorData;
    if (p.torchDtype === 'int64') {
      const v = t.data[0];
      tf.tidy(() => p.variable.assign(tf.scalar(Number(v ?? 0), 'int32')));
      continue;
    }
    tf.tidy(() => {
      const value = tf.tensor(toFloat32(t), p.torchShape, 'float32');
      p.variable.assign(fromTorchLayout(p, value));
    });
  }
}

/** The model's parameters and buffers as an official-layout state dict (float32; counters int64). */
export function exportStateDict(model: Module, prefix = ''): StateDict {
  const out: StateDict = new Map();
  for (const [name, p] of model.namedParams(prefix)) {
    if (p.torchDtype === 'int64') {
      const v = p.variable.dataSync()[0] ?? 0;
      out.set(name, { dtype: 'int64', shape: p.torchShape.slice(), data: BigInt64Array.of(BigInt(Math.round(v))) });
      continue;
    }
    const t = toTorchLayout(p);
    const data = t.dataSync() as Float32Array;
    t.dispose();
    if (data.length !== numel(p.torchShape)) throw new Error(`internal: ${name} has ${data.length} values for shape [${p.torchShape}]`);
    out.set(name, { dtype: 'float32', shape: p.torchShape.slice(), data: Float32Array.from(data) });
  }
  return out;
}

/** Strips a leading key prefix (e.g. `module.` from DataParallel checkpoints) when every key has it. */
export function stripPrefix(sd: StateDict, prefix: string): StateDict {
  const keys = [...sd.keys()];
  if (keys.length === 0 || !keys.every((k) => k.startsWith(prefix))) return sd;
  const out: StateDict = new Map();
  for (const [k, v] of sd) out.set(k.slice(prefix.length), v);
  return out;
}
