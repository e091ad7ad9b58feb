/**
 * Data-parallel training on all cores: rank 0 is the calling thread (it keeps the model, the optimiser
 * and the checkpoints), ranks 1…N−1 are worker threads, each with its own tfjs backend and a replica of
 * the model. Per step:
 *
 * 1. rank 0 writes every weight and buffer to shared memory and sends each worker its rows of the batch;
 * 2. every rank runs the forward of its rows inside the gradient tape; the normalised features are
 *    gathered (shared memory, Atomics) so the contrastive and distillation losses see the whole batch,
 *    with the rank's own rows live and the others constant (open_clip's gather-with-grad) — the gradient
 *    of the whole-batch loss through its own rows is that rank's share;
 * 3. the workers publish their gradients, rank 0 adds them to its own, and the Trainer clips and applies
 *    one AdamW update. The next step starts from rank 0's weights, so the replicas never drift.
 *
 * BatchNorm uses each rank's own batch statistics (PyTorch DDP's default); the running statistics are
 * rank 0's (DDP's `broadcast_buffers`). With frozen BatchNorm (`freezeBatchNorm`) N ranks compute the
 * same loss and gradients as one, up to the order of float sums. Only the model's own parameters and the
 * default loss list (`reinforcedTerms(λ)`) are supported: plug-in loss terms, extra parameter groups and
 * hooks live in rank 0 only, so the Trainer refuses them with more than one worker.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import * as tf from '../../tf.js';
import { MclipError } from '../../../errors.js';
import type { CLIP } from '../../model/clip.js';
import type { TeacherSpec } from '../distill-loss.js';
import { lossAndGrads, type GradientSource, type LossAndGrads, type LossOptions } from '../step.js';
import type { TrainBatch } from '../loss-terms.js';
import { Exchange, allocateExchange, rankRows } from './exchange.js';
import { storeWeights, valueCounts } from './weights.js';
import type { FromWorker, ToWorker, WorkerInit } from './protocol.js';

export interface DataParallelOptions {
  /** Ranks including this thread (≥ 2). */
  workers: number;
  /** The largest batch a step will get. */
  maxBatch: number;
  /** λ of the default loss list. */
  lambda: number;
  teachers?: readonly TeacherSpec[];
  freezeBatchNorm?: boolean;
  /** tfjs backend for the workers (default: the current one). */
  backend?: string;
  /** How long to wait for the workers to start (default 120 s). */
  startTimeoutMs?: number;
}

/** The compiled worker entry: beside this module in dist/, or — when running from the TypeScript sources (tests) — in dist/. */
export function workerEntry(): URL | null {
  const here = new URL('./worker.js', import.meta.url);
  if (existsSync(fileURLToPath(here))) return here;
  const src = fileURLToPath(import.meta.url);
  const m = /^(.*)[\\/]src[\\/]base[\\/]train[\\/]parallel[\\/][^\\/]+\.ts$/.exec(src);
  if (!m) return null;
  const dist = `${m[1]}/dist/src/base/train/parallel/worker.js`;
  return existsSync(dist) ? pathToFileURL(dist) : null;
}

export class DataParallel implements GradientSource {
  private stepCounter = 0;
  private closed = false;

  private constructor(
    private readonly ex: Exchange,
    private readonly threads: Worker[],
    private readonly gradNames: string[],
    readonly workers: number,
  ) {}

  /**
   * Starts `opts.workers − 1` worker threads holding replicas of `model` (its structure; weights come
   * with every step). Resolves to null, with the reason, when threads cannot start — the caller then
   * trains on this thread alone.
   */
  static async start(model: CLIP, opts: DataParallelOptions): Promise<{ dp: DataParallel | null; reason?: string }> {
    if (opts.workers < 2) return { dp: null, reason: 'one worker asked for' };
    const entry = workerEntry();
    if (!entry) return { dp: null, reason: 'the compiled worker (dist/src/base/train/parallel/worker.js) is missing: run `npx tsc -p tsconfig.json`' };
    if (model.hasHooks()) return { dp: null, reason: 'the model has forward hooks, which live on this thread only' };
    const counts = valueCounts(model);
    const params = model.namedParams();
    const buffers = allocateExchange({ ranks: opts.workers, maxBatch: opts.maxBatch, embedDim: model.cfg.embedDim, weightValues: counts.weights, gradValues: counts.grads });
    const base: Omit<WorkerInit, 'rank'> = {
      type: 'init',
      buffers,
      config: model.cfg,
      backend: opts.backend ?? tf.getBackend(),
      lambda: opts.lambda,
      teachers: opts.teachers ? [...opts.teachers] : undefined,
      freezeBatchNorm: opts.freezeBatchNorm ?? false,
      paramNames: params.map(([n]) => n),
      gradNames: params.filter(([, p]) => p.trainable).map(([n]) => n),
    };
    const threads: Worker[] = [];
    try {
      const ready = [];
      for (let rank = 1; rank < opts.workers; rank++) {
        const w = new Worker(entry);
        threads.push(w);
        ready.push(
          new Promise<void>((ok, fail) => {
            const timer = setTimeout(() => fail(new Error(`worker ${rank} did not start within ${(opts.startTimeoutMs ?? 120_000) / 1000} s`)), opts.startTimeoutMs ?? 120_000);
            w.once('error', (e) => {
              clearTimeout(timer);
              fail(e);
            });
            w.once('message', (m: FromWorker) => {
              clearTimeout(timer);
              if (m.type === 'ready') ok();
              else fail(new Error(m.message));
            });
          }),
        );
        const init: ToWorker = { ...base, rank };
        w.postMessage(init);
      }
      await Promise.all(ready);
    } catch (e) {
      await Promise.all(threads.map((t) => t.terminate()));
      return { dp: null, reason: `worker threads could not start: ${e instanceof Error ? e.message : String(e)}` };
    }
    const ex = new Exchange(buffers, 0);
    const dp = new DataParallel(ex, threads, base.gradNames, opts.workers);
    for (const t of threads) {
      t.on('message', (m: FromWorker) => {
        if (m.type === 'error') ex.fail(`rank ${m.rank}: ${m.message}`);
      });
      t.on('error', (e) => ex.fail(e.message));
      t.unref();
    }
    return { dp };
  }

  /** Loss and gradients of the whole batch, computed by all ranks (rank 0 here). */
  lossAndGrads(model: CLIP, batch: TrainBatch, opts: LossOptions): LossAndGrads {
    if (this.closed) throw new MclipError('data-parallel training: the workers were stopped');
    this.ex.checkError();
    const step = ++this.stepCounter;
    const b = batch.images.shape[0];
    const n = this.workers;
    if (b < n) throw new MclipError(`data-parallel training: batch ${b} is smaller than the ${n} workers`);
    storeWeights(model, this.ex.weights);
    const [, h, w, c] = batch.images.shape;
    const s = batch.gtTokens.shape[1];
    const rows = (t: tf.Tensor, r: [number, number]) => tf.tidy(() => t.slice([r[0]], [r[1] - r[0]]));
    for (let rank = 1; rank < n; rank++) {
      const r = rankRows(b, rank, n);
      const [img, gt, syn] = [rows(batch.images, r), rows(batch.gtTokens, r), batch.synTokens ? rows(batch.synTokens, r) : null];
      const msg: ToWorker = {
        type: 'step',
        step,
        trainStep: opts.step ?? 0,
        batch: b,
        images: img.dataSync() as Float32Array,
        imageShape: [r[1] - r[0], h, w, c],
        gtTokens: gt.dataSync() as Int32Array,
        synTokens: syn ? (syn.dataSync() as Int32Array) : undefined,
        context: s,
        teacherImg: batch.teacherImg,
        teacherGt: batch.teacherGt,
        teacherSyn: batch.teacherSyn,
      };
      tf.dispose([img, gt, ...(syn ? [syn] : [])]);
      this.threads[rank - 1].postMessage(msg);
    }
    const own = rankRows(b, 0, n);
    const local: TrainBatch = {
      images: rows(batch.images, own) as tf.Tensor4D,
      gtTokens: rows(batch.gtTokens, own) as tf.Tensor2D,
      synTokens: batch.synTokens ? (rows(batch.synTokens, own) as tf.Tensor2D) : undefined,
      teacherImg: batch.teacherImg,
      teacherGt: batch.teacherGt,
      teacherSyn: batch.teacherSyn,
    };
    let r: LossAndGrads;
    try {
      r = lossAndGrads(model, local, { ...opts, gather: { batchSize: b, ownsLossParameters: true, gather: (parts) => this.ex.gather(parts, b, step) } });
    } catch (e) {
      this.ex.fail(`rank 0: ${e instanceof Error ? e.message : String(e)}`);
      throw e;
    } finally {
      tf.dispose([local.images, local.gtTokens, ...(local.synTokens ? [local.synTokens] : [])]);
    }
    try {
      const byName = new Map(model.namedParams());
      for (let rank = 1; rank < n; rank++) {
        const flat = this.ex.takeGrads(rank, step);
        let o = 0;
        for (const name of this.gradNames) {
          const v = byName.get(name)!.variable;
          const part = flat.subarray(o, o + v.size);
          o += v.size;
          const mine = r.grads[v.name];
          r.grads[v.name] = tf.tidy(() => (mine ? mine.add(tf.tensor(part, v.shape)) : tf.tensor(part, v.shape)));
          mine?.dispose();
        }
      }
    } catch (e) {
      tf.dispose([r.loss, ...Object.values(r.losses), ...Object.values(r.grads)]);
      throw e;
    }
    return r;
  }

  /** Stops the worker threads. */
  async dispose(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.threads) t.postMessage({ type: 'stop' } satisfies ToWorker);
    await Promise.all(this.threads.map((t) => t.terminate()));
  }
}
