/** Messages between the data-parallel coordinator (rank 0) and its worker threads. */
import type { ClipConfig } from '../../model/configs.js';
import type { TeacherSpec } from '../distill-loss.js';
import type { ExchangeBuffers } from './exchange.js';

export interface WorkerInit {
  type: 'init';
  rank: number;
  buffers: ExchangeBuffers;
  config: ClipConfig;
  /** The coordinator's tfjs backend ('wasm', 'cpu', 'tensorflow'). */
  backend: string;
  /** The default loss list `reinforcedTerms(lambda)`. */
  lambda: number;
  teachers?: TeacherSpec[];
  /** BatchNorm in eval mode while training (frozen statistics). */
  freezeBatchNorm: boolean;
  /** namedParams() names (weights region order) and the trainable ones (gradient region order). */
  paramNames: string[];
  gradNames: string[];
}

export interface WorkerStep {
  type: 'step';
  /** Exchange step number (monotonic over the run). */
  step: number;
  /** 0-based optimiser step (LossInputs.step). */
  trainStep: number;
  /** Whole-batch rows. */
  batch: number;
  /** This rank's rows: NHWC images [rows, H, W, 3] and token rows [rows, S]. */
  images: Float32Array;
  imageShape: [number, number, number, number];
  gtTokens: Int32Array;
  synTokens?: Int32Array;
  context: number;
  /** Whole-batch teacher features [batch, ΣD]. */
  teacherImg?: Float32Array;
  teacherGt?: Float32Array;
  teacherSyn?: Float32Array;
}

export type ToWorker = WorkerInit | WorkerStep | { type: 'stop' };

export type FromWorker = { type: 'ready'; rank: number } | { type: 'error'; rank: number; message: string };
