import * as tf from '../tf.js';
import { Module } from '../nn/module.js';
import type { Initializer } from '../nn/init.js';

/**
 * LearnablePositionalEmbedding wrapped as the official `PositionalEmbedding`
 * (key `<name>.pos_embed.pos_embed`, shape [1, 1, N, C]). For a sequence length other than N the
 * official code bilinearly interpolates (align_corners = False) along the sequence; so do we.
 */
class LearnablePositionalEmbedding extends Module {
  constructor(n: number, dim: number, init: Initializer) {
    super();
    this.addParam('pos_embed', init.truncNormal([n, dim], dim ** -0.5), { torchShape: [1, 1, n, dim], noDecay: false });
  }

  get table(): tf.Variable {
    return this.param('pos_embed');
  }

  forward(x: tf.Tensor): tf.Tensor {
    return x;
  }
}

export class PositionalEmbedding extends Module {
  constructor(numEmbeddings: number, dim: number, init: Initializer) {
    super();
    this.addModule('pos_embed', new LearnablePositionalEmbedding(numEmbeddings, dim, init));
  }

  private get inner(): LearnablePositionalEmbedding {
    return this.childAs('pos_embed', LearnablePositionalEmbedding);
  }

  /** N, from the table [N, C]. */
  get numEmbeddings(): number {
    return this.inner.table.shape[0];
  }

  /** Positional table for `seqLen` positions: [seqLen, C]. */
  table(seqLen: number): tf.Tensor2D {
    const t = this.inner.table as tf.Tensor2D;
    if (seqLen === this.numEmbeddings) return t;
    return tf.tidy(() => {
      const [n, c] = t.shape;
      const img = t.reshape([1, n, c, 1]) as tf.Tensor4D;
      return tf.image.resizeBilinear(img, [seqLen, c], false, true).reshape([seqLen, c]) as tf.Tensor2D;
    });
  }

  /** Adds the positional table to x [B, S, C]. */
  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => x.add(this.table(x.shape[1] as number)));
  }
}
