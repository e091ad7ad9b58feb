/**
 * The core's per-pass tensor ownership (ForwardContext: tensors a hook sets in the text state live until the
 * pass ends, then are freed) and the `after_attention` hook site of TransformerEncoder (between the attention
 * residual and the FFN, where token reducers act).
 */
import { describe, expect, it } from 'vitest';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { TextTransformer } from '../../src/base/model/text-transformer.js';
import { TEXT_TOKENS } from '../../src/base/model/text-context.js';
import { ContextKey, ForwardContext } from '../../src/base/nn/context.js';
import { Initializer } from '../../src/base/nn/init.js';
import { TransformerEncoder } from '../../src/base/layers/transformer-encoder.js';
import { microConfig } from '../micro-config.js';
import { microTokens as tokens, relErr } from './helpers.js';

await initBackend({ backend: 'wasm', quiet: true });

function causalTower(): TextTransformer {
  const cfg = microConfig('mobileclip_tiny_base').text;
  cfg.nTransformerLayers = 2;
  return new TextTransformer(cfg, 64, { init: new Initializer(3) }).eval();
}

const values = (t: tf.Tensor) => Float32Array.from(t.dataSync());

describe('forward pass tensor ownership', () => {
  it('a layer hook that replaces the EOT index (a tensor made inside a tidy) is read by pooling, not freed first', () => {
    const t = causalTower();
    const ids = tokens([3, 6]);
    try {
      const ref = tf.tidy(() => values(t.forward(ids)));
      // Replace eot by a freshly computed (equal) tensor in a pre-hook of layer 1, and trim the sequence to 7
      // tokens at layer 0's after_attention site (inside the encoder's tidy): causal, so the EOT rows are exact.
      const h0 = t.transformer.at(0).get('after_attention').registerForwardHook((_m, _x, y, ctx) => {
        const s = ctx!.require(TEXT_TOKENS);
        ctx!.set(TEXT_TOKENS, { ...s, eot: s.eot.add(0).toInt() as tf.Tensor1D, positions: tf.tile(tf.range(0, 7, 1, 'int32').expandDims(0), [2, 1]) as tf.Tensor2D });
        return y.slice([0, 0, 0], [-1, 7, -1]);
      });
      const h1 = t.transformer.at(1).registerForwardPreHook((_m, _x, ctx) => {
        const s = ctx!.require(TEXT_TOKENS);
        ctx!.set(TEXT_TOKENS, { ...s, eot: tf.tidy(() => s.eot.mul(1).toInt() as tf.Tensor1D) });
      });
      const before = tf.memory().numTensors;
      const got = tf.tidy(() => values(t.forward(ids)));
      // Everything the hooks set was freed when the pass ended.
      expect(tf.memory().numTensors).toBe(before);
      h0.remove();
      h1.remove();
      expect(relErr(ref, got)).toBeLessThanOrEqual(1e-5);
      // Gradients run after the pass has ended (the tape keeps its own copies).
      const emb = t.namedParams().find(([n]) => n === 'embedding_layer.weight')![1].variable;
      const h2 = t.transformer.at(0).registerForwardPreHook((_m, _x, ctx) => {
        const s = ctx!.require(TEXT_TOKENS);
        ctx!.set(TEXT_TOKENS, { ...s, eot: s.eot.add(0).toInt() as tf.Tensor1D });
      });
      const { value, grads } = tf.variableGrads(() => t.forward(ids).square().sum() as tf.Scalar, [emb]);
      h2.remove();
      expect(tf.tidy(() => grads[emb.name].abs().sum().dataSync()[0])).toBeGreaterThan(0);
      tf.dispose([value, grads[emb.name]]);
    } finally {
      ids.dispose();
      t.dispose();
    }
  });

  it('the context owns the tensors its keys name and frees them at endPass; other values stay the caller’s', () => {
    const OWNED = new ContextKey<{ a: tf.Tensor; b: tf.Tensor | null }>('test owned', (v) => [v.a, v.b]);
    const PLAIN = new ContextKey<tf.Tensor>('test plain');
    const ctx = new ForwardContext();
    const mine = tf.scalar(1);
    const a = tf.tidy(() => {
      const made = tf.scalar(2).add(1);
      ctx.set(OWNED, { a: made, b: null });
      ctx.set(PLAIN, mine);
      ctx.set(OWNED, { a: made, b: null }); // owning twice is owning once
      return made.add(0);
    });
    expect(ctx.require(OWNED).a.isDisposed).toBe(false); // survived the tidy
    expect(ctx.ownedCount).toBe(1);
    const held = ctx.require(OWNED).a;
    ctx.endPass();
    expect(held.isDisposed).toBe(true);
    expect(mine.isDisposed).toBe(false);
    expect(ctx.has(OWNED)).toBe(false);
    tf.dispose([a, mine]);
  });

  it('after_attention is a parameter-free identity by default; a hook there changes what the FFN sees', () => {
    const t = causalTower();
    const ids = tokens([4, 9]);
    try {
      const layer = t.transformer.at(0);
      expect(layer).toBeInstanceOf(TransformerEncoder);
      expect(t.namedParams().some(([n]) => n.includes('after_attention'))).toBe(false);
      const ref = tf.tidy(() => values(t.forward(ids)));
      let ffnIn: number[] = [];
      const hf = (layer as TransformerEncoder).preNormFfn.registerForwardPreHook((_m, x) => {
        ffnIn = x.shape.slice();
      });
      const h = layer.get('after_attention').registerForwardHook(() => undefined);
      expect(tf.tidy(() => values(t.forward(ids)))).toEqual(ref);
      h.remove();
      const h2 = layer.get('after_attention').registerForwardHook((_m, _x, y) => y.slice([0, 0, 0], [-1, 10, -1]));
      tf.tidy(() => t.forward(ids)).dispose();
      h2.remove();
      hf.remove();
      expect(ffnIn).toEqual([2, 10, 64]);
    } finally {
      ids.dispose();
      t.dispose();
    }
  });
});
