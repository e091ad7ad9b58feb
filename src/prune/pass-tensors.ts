import * as tf from '../base/tf.js';

/**
 * Tensors a plug-in's hook puts into the text state (`TEXT_TOKENS.positions`, `.sizes`) must outlive the
 * `tf.tidy` of the module whose hook made them (the embedding, a layer): later layers and pooling read
 * them. The hook keeps them here; they are freed when the next forward pass begins (`startPass`) or when
 * the plug-in is removed (`dispose`), so at most one pass's worth is held.
 */
export class PassTensors {
  private held: tf.Tensor[] = [];

  /** Frees the previous pass's tensors. */
  startPass(): void {
    this.dispose();
  }

  /** Keeps `t` (beyond every enclosing tidy) until the next pass; returns it. */
  keep<T extends tf.Tensor>(t: T): T {
    this.held.push(tf.keep(t));
    return t;
  }

  dispose(): void {
    tf.dispose(this.held);
    this.held = [];
  }
}
