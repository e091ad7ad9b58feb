import * as tf from '../tf.js';

/**
 * Seeded parameter initialisation. Every initialiser draws its seed from one counter so that a
 * model built twice with the same `seed` gets the same weights.
 */
export class Initializer {
  private counter: number;

  constructor(seed = 0) {
    this.counter = seed * 1_000_003 + 17;
  }

  private nextSeed(): number {
    this.counter = (this.counter * 1103515245 + 12345) % 2147483647;
    return this.counter;
  }

  /** PyTorch's default for Conv/Linear weights: U(-1/√fan_in, 1/√fan_in). */
  uniformFanIn(shape: number[], fanIn: number): tf.Tensor {
    const b = 1 / Math.sqrt(Math.max(1, fanIn));
    return tf.randomUniform(shape, -b, b, 'float32', this.nextSeed());
  }

  normal(shape: number[], std: number): tf.Tensor {
    return tf.randomNormal(shape, 0, std, 'float32', this.nextSeed());
  }

  truncNormal(shape: number[], std: number): tf.Tensor {
    return tf.truncatedNormal(shape, 0, std, 'float32', this.nextSeed());
  }
}

export function zeros(shape: number[]): tf.Tensor {
  return tf.zeros(shape, 'float32');
}

export function ones(shape: number[]): tf.Tensor {
  return tf.ones(shape, 'float32');
}

export function full(shape: number[], v: number): tf.Tensor {
  return tf.fill(shape, v, 'float32');
}
