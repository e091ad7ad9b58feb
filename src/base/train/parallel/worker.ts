/**
 * A data-parallel training worker thread (rank ≥ 1): holds a replica of the model, and for every step
 * loads the coordinator's weights, computes the loss of the whole batch with its own rows live (the
 * features are gathered through shared memory inside the gradient tape) and publishes its gradients.
 */
import { parentPort } from 'node:worker_threads';
import * as tf from '../../tf.js';
import { initBackend } from '../../backend/index.js';
import { CLIP } from '../../model/clip.js';
import { lossAndGrads } from '../step.js';
import { reinforcedTerms } from '../loss-terms.js';
import { freezeBatchNorm } from '../freeze-batch-norm.js';
import { Exchange } from './exchange.js';
import { loadWeights, flattenGrads } from './weights.js';
import type { FromWorker, ToWorker, WorkerInit, WorkerStep } from './protocol.js';

const port = parentPort;
if (!port) throw new Error('data-parallel worker: not started as a worker thread');

let state: { init: WorkerInit; model: CLIP; ex: Exchange } | null = null;

function send(m: FromWorker): void {
  port!.postMessage(m);
}

async function start(init: WorkerInit): Promise<void> {
  await initBackend({ backend: init.backend, quiet: true });
  const model = new CLIP(init.config);
  const names = model.namedParams().map(([n]) => n);
  if (names.join('\n') !== init.paramNames.join('\n')) throw new Error('the replica has other parameters than the coordinator’s model');
  model.train();
  if (init.freezeBatchNorm) freezeBatchNorm(model);
  state = { init, model, ex: new Exchange(init.buffers, init.rank) };
}

function step(m: WorkerStep): void {
  const { init, model, ex } = state!;
  loadWeights(model, ex.weights);
  const [rows, h, w, c] = m.imageShape;
  const images = tf.tensor4d(m.images, [rows, h, w, c]);
  const gtTokens = tf.tensor2d(m.gtTokens, [rows, m.context], 'int32');
  const synTokens = m.synTokens ? tf.tensor2d(m.synTokens, [rows, m.context], 'int32') : undefined;
  try {
    const r = lossAndGrads(
      model,
      { images, gtTokens, synTokens, teacherImg: m.teacherImg, teacherGt: m.teacherGt, teacherSyn: m.teacherSyn },
      {
        losses: reinforcedTerms(init.lambda),
        teachers: init.teachers,
        variables: model.trainableVariables(),
        step: m.trainStep,
        gather: { batchSize: m.batch, ownsLossParameters: false, gather: (parts) => ex.gather(parts, m.batch, m.step) },
      },
    );
    const flat = flattenGrads(model, init.gradNames, r.grads, ex.layout.gradValues);
    tf.dispose([r.loss, ...Object.values(r.losses), ...Object.values(r.grads)]);
    ex.putGrads(flat, m.step);
  } finally {
    tf.dispose([images, gtTokens, ...(synTokens ? [synTokens] : [])]);
  }
}

port.on('message', (m: ToWorker) => {
  const rank = m.type === 'init' ? m.rank : (state?.init.rank ?? -1);
  try {
    if (m.type === 'init') {
      start(m).then(
        () => send({ type: 'ready', rank }),
        (e: unknown) => send({ type: 'error', rank, message: e instanceof Error ? e.message : String(e) }),
      );
    } else if (m.type === 'step') {
      step(m);
    } else {
      state?.model.dispose();
      port.close();
    }
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    state?.ex.fail(message);
    send({ type: 'error', rank, message });
  }
});
