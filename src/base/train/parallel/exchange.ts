/**
 * The shared memory of data-parallel training: one set of SharedArrayBuffers seen by the coordinator
 * (rank 0, the main thread) and every worker thread (ranks 1…N−1).
 *
 * - `weights`: every parameter and buffer of the model, flat, in `namedParams()` order. Rank 0 writes
 *   them before each step, the workers load them (so every replica starts each step identical; the
 *   BatchNorm running statistics come from rank 0, as PyTorch DDP's `broadcast_buffers`).
 * - `features`: the normalised image / gt-text / syn-text features of the whole batch, [3, B_max, D];
 *   rank k writes its rows, then reads everyone's (the gather of open_clip's gather-with-grad).
 * - `grads`: one region per rank of every trainable variable's gradient, flat.
 * - `control`: Int32 flags — the step number each rank has published features / gradients for, an error
 *   flag, and the error text — so the exchange runs synchronously inside the gradient tape
 *   (Atomics.wait), without leaving tf.variableGrads.
 */
import * as tf from '../../tf.js';
import { MclipError } from '../../../errors.js';

/** Byte sizes are fixed at start: the largest batch, the embedding width, the parameter counts. */
export interface ExchangeLayout {
  ranks: number;
  maxBatch: number;
  embedDim: number;
  /** Values of every parameter and buffer (weights region). */
  weightValues: number;
  /** Values of every trainable variable (one gradient region). */
  gradValues: number;
}

export interface ExchangeBuffers {
  layout: ExchangeLayout;
  control: SharedArrayBuffer;
  features: SharedArrayBuffer;
  weights: SharedArrayBuffer;
  grads: SharedArrayBuffer;
  errorText: SharedArrayBuffer;
}

const ERROR_TEXT_BYTES = 2048;
/** How long a rank waits for another before giving up (a stuck or dead thread). */
const WAIT_LIMIT_MS = 10 * 60 * 1000;

export function allocateExchange(layout: ExchangeLayout): ExchangeBuffers {
  return {
    layout,
    // [0, N): features published for step; [N, 2N): gradients published for step; 2N: error rank + 1.
    control: new SharedArrayBuffer(4 * (2 * layout.ranks + 1)),
    features: new SharedArrayBuffer(4 * 3 * layout.maxBatch * layout.embedDim),
    weights: new SharedArrayBuffer(4 * layout.weightValues),
    grads: new SharedArrayBuffer(4 * layout.ranks * layout.gradValues),
    errorText: new SharedArrayBuffer(ERROR_TEXT_BYTES),
  };
}

/** Rows [start, end) of a batch of `b` that rank `rank` of `ranks` computes. */
export function rankRows(b: number, rank: number, ranks: number): [number, number] {
  return [Math.floor((rank * b) / ranks), Math.floor(((rank + 1) * b) / ranks)];
}

/** One rank's view of the shared memory. */
export class Exchange {
  readonly layout: ExchangeLayout;
  private readonly control: Int32Array;
  private readonly features: Float32Array;
  readonly weights: Float32Array;
  private readonly grads: Float32Array;
  private readonly errorText: Uint8Array;

  constructor(
    buffers: ExchangeBuffers,
    readonly rank: number,
  ) {
    this.layout = buffers.layout;
    this.control = new Int32Array(buffers.control);
    this.features = new Float32Array(buffers.features);
    this.weights = new Float32Array(buffers.weights);
    this.grads = new Float32Array(buffers.grads);
    this.errorText = new Uint8Array(buffers.errorText);
  }

  private get errorIndex(): number {
    return 2 * this.layout.ranks;
  }

  /** Marks the run failed (by this rank) and wakes every waiting rank. */
  fail(message: string): void {
    const bytes = new TextEncoder().encode(message.slice(0, 500));
    this.errorText.fill(0);
    this.errorText.set(bytes.subarray(0, ERROR_TEXT_BYTES - 1));
    Atomics.store(this.control, this.errorIndex, this.rank + 1);
    for (let i = 0; i < this.errorIndex; i++) Atomics.notify(this.control, i);
  }

  /** Throws if some rank failed. */
  checkError(): void {
    const who = Atomics.load(this.control, this.errorIndex);
    if (who === 0) return;
    const end = this.errorText.indexOf(0);
    const text = new TextDecoder().decode(this.errorText.slice(0, end < 0 ? undefined : end));
    throw new MclipError(`data-parallel training: worker ${who - 1} failed: ${text}`);
  }

  private publish(index: number, step: number): void {
    Atomics.store(this.control, index, step);
    Atomics.notify(this.control, index);
  }

  private waitFor(index: number, step: number, what: string): void {
    const t0 = Date.now();
    for (;;) {
      this.checkError();
      const v = Atomics.load(this.control, index);
      if (v === step) return;
      if (Date.now() - t0 > WAIT_LIMIT_MS) throw new MclipError(`data-parallel training: no ${what} from rank ${index % this.layout.ranks} after ${WAIT_LIMIT_MS / 1000} s`);
      Atomics.wait(this.control, index, v, 1000);
    }
  }

  /**
   * The gather: writes this rank's rows of each feature matrix ([rows, D]: image, gt text, syn text),
   * waits for every rank, and returns the whole-batch matrices [b, D] in which this rank's rows are the
   * given (taped) tensors and the other rows constants — so back-propagating the whole-batch loss gives
   * exactly this rank's share of the gradient.
   */
  gather(parts: tf.Tensor2D[], b: number, step: number): tf.Tensor2D[] {
    const { ranks, maxBatch, embedDim: d } = this.layout;
    if (b > maxBatch) throw new MclipError(`data-parallel training: batch ${b} is above the ${maxBatch} the workers were started for`);
    const [start, end] = rankRows(b, this.rank, ranks);
    parts.forEach((p, i) => {
      if (p.shape[0] !== end - start || p.shape[1] !== d) throw new MclipError(`data-parallel training: rank ${this.rank} feature ${i} is [${p.shape}], expected [${end - start}, ${d}]`);
      this.features.set(p.dataSync() as Float32Array, (i * maxBatch + start) * d);
    });
    this.publish(this.rank, step);
    for (let r = 0; r < ranks; r++) if (r !== this.rank) this.waitFor(r, step, 'features');
    return parts.map((p, i) => {
      const base = i * maxBatch * d;
      const pieces: tf.Tensor2D[] = [];
      if (start > 0) pieces.push(tf.tensor2d(this.features.slice(base, base + start * d), [start, d]));
      pieces.push(p);
      if (end < b) pieces.push(tf.tensor2d(this.features.slice(base + end * d, base + b * d), [b - end, d]));
      return pieces.length === 1 ? p : (tf.concat(pieces, 0) as tf.Tensor2D);
    });
  }

  /** Writes this rank's gradients (flat, trainable-variable order) and publishes them for `step`. */
  putGrads(values: Float32Array, step: number): void {
    this.grads.set(values, this.rank * this.layout.gradValues);
    this.publish(this.layout.ranks + this.rank, step);
  }

  /** Waits for rank `rank`'s gradients of `step` and returns a view of them. */
  takeGrads(rank: number, step: number): Float32Array {
    this.waitFor(this.layout.ranks + rank, step, 'gradients');
    const n = this.layout.gradValues;
    return this.grads.subarray(rank * n, (rank + 1) * n);
  }
}
