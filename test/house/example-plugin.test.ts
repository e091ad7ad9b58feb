/**
 * The example plug-in of docs/architecture.md, run: learnable per-head gates on the text attention
 * (a toy of TinyCLIP's head masks) built only from the core's seams — hooks, a loss term, a parameter
 * group — then folded into the weights so the plain model exports. Keep this file and the doc in step.
 */
import { describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '../../src/base/tf.js';
import { initBackend } from '../../src/base/backend/index.js';
import { CLIP } from '../../src/base/model/clip.js';
import type { HookHandle } from '../../src/base/nn/module.js';
import { MultiHeadAttention } from '../../src/base/layers/multi-head-attention.js';
import { Trainer } from '../../src/base/train/trainer.js';
import { reinforcedTerms, type LossTerm } from '../../src/base/train/loss-terms.js';
import type { ParamGroup } from '../../src/base/train/adamw.js';
import { exportOnnx } from '../../src/export/index.js';
import { MICRO_CONTEXT as L, microConfig } from '../micro-config.js';

await initBackend({ backend: 'wasm', quiet: true });

// ---- the plug-in (as in docs/architecture.md) -------------------------------------------------

/** A gate per head of every text attention layer, applied to the heads' outputs before out_proj. */
class HeadGates {
  readonly gates = new Map<MultiHeadAttention, tf.Variable>();
  private readonly handles: HookHandle[] = [];

  constructor(model: CLIP) {
    for (const [path, m] of model.textEncoder.namedModules('text_encoder.')) {
      if (!(m instanceof MultiHeadAttention)) continue;
      const h = m.numHeads;
      const d = m.headDim;
      const g = tf.variable(tf.ones([h]), true, `head_gates.${path}`);
      this.gates.set(m, g);
      // out_proj's input [B, N, h·d] viewed as [B, N, h, d], each head scaled by its gate.
      this.handles.push(m.outProj.registerForwardPreHook((_m, x) => tf.tidy(() => x.reshape([...x.shape.slice(0, -1), h, d]).mul(g.reshape([h, 1])).reshape(x.shape))));
    }
  }

  /** L1 on the gates: pushes heads towards 0. */
  sparsity(weight: number): LossTerm {
    return { name: 'gate_l1', weight, compute: () => tf.addN([...this.gates.values()].map((g) => g.abs().sum())) as tf.Scalar };
  }

  group(lr: number): ParamGroup {
    return { name: 'head_gates', variables: [...this.gates.values()], lr, weightDecay: 0 };
  }

  /** Folds each gate into the rows of out_proj that read its head, removes the hooks: a plain model again. */
  fold(): void {
    for (const [m, g] of this.gates) {
      const w = m.outProj.weight; // TF.js layout [h·d, C]
      tf.tidy(() => w.assign(w.reshape([m.numHeads, m.headDim, -1]).mul(g.reshape([-1, 1, 1])).reshape(w.shape)));
    }
    this.dispose();
  }

  dispose(): void {
    for (const h of this.handles) h.remove();
    for (const g of this.gates.values()) g.dispose();
    this.gates.clear();
  }
}

// ---- the test -------------------------------------------------------------------------------------

function batch(step: number, cfg: ReturnType<typeof microConfig>) {
  const b = 4;
  const s = cfg.image.imageSize;
  let r = 5 + step;
  const rnd = () => (r = (r * 1103515245 + 12345) % 2147483648) / 2147483648;
  const t = new Int32Array(b * L);
  for (let i = 0; i < b; i++) {
    t[i * L] = cfg.text.vocabSize - 2;
    for (let j = 1; j < 5 + i; j++) t[i * L + j] = 1 + Math.floor(rnd() * 200);
    t[i * L + 5 + i] = cfg.text.vocabSize - 1;
  }
  return { images: tf.tensor4d(Float32Array.from({ length: b * s * s * 3 }, rnd), [b, s, s, 3]), gtTokens: tf.tensor2d(t, [b, L], 'int32') };
}

describe('example plug-in (docs/architecture.md): head gates through hooks, a loss term and a parameter group', () => {
  it('trains the gates, folds them into out_proj with the same outputs, and the folded model exports with ORT parity', async () => {
    const cfg = microConfig();
    const model = new CLIP(cfg, { seed: 2 });
    const gates = new HeadGates(model);
    const trainer = new Trainer(model, { lr: 1e-3, totalSteps: 3, losses: [...reinforcedTerms(0), gates.sparsity(1)], paramGroups: [gates.group(0.05)] });
    const logged: Array<Record<string, number>> = [];
    for (let i = 0; i < 3; i++) {
      const b = batch(i, cfg);
      logged.push(trainer.step(b).losses);
      tf.dispose([b.images, b.gtTokens]);
    }
    expect(Object.keys(logged[0]).sort()).toEqual(['contrastive', 'gate_l1']);
    // Two layers' worth of gates (the micro mct tower has one encoder: 2 heads): L1 starts at 2 and falls.
    expect(logged[0].gate_l1).toBeCloseTo(2, 5);
    expect(logged[2].gate_l1).toBeLessThan(logged[0].gate_l1);
    model.eval();
    const ids = batch(9, cfg);
    const gated = tf.tidy(() => Array.from(model.encodeText(ids.gtTokens).dataSync()));
    gates.fold();
    expect(model.hasHooks()).toBe(false);
    const folded = tf.tidy(() => Array.from(model.encodeText(ids.gtTokens).dataSync()));
    expect(Math.max(...folded.map((v, i) => Math.abs(v - gated[i])))).toBeLessThan(1e-5);
    const dir = mkdtempSync(join(tmpdir(), 'mclip-plugin-'));
    try {
      const r = await exportOnnx(model, join(dir, 'gated.onnx'), { tower: 'text', opset: 17, verifyBatch: 2 });
      expect(r.verify!.relDiff.text_features).toBeLessThanOrEqual(1e-4);
    } finally {
      rmSync(dir, { recursive: true, force: true });
      tf.dispose([ids.images, ids.gtTokens]);
      trainer.dispose();
      model.dispose();
    }
  });
});
