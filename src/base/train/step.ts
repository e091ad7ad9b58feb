import * as tf from '../tf.js';
import type { CLIP } from '../model/clip.js';
import { l2normalize } from '../model/clip.js';
import { clipLoss } from './clip-loss.js';
import { AdamW, clipGradNorm } from './adamw.js';

export interface StepResult {
  loss: number;
  gradNorm: number;
}

/**
 * Loss and gradients of one CLIP batch (images NHWC, tokens [B, S] int32); the model must be in
 * train mode for BatchNorm batch statistics. Returns gradients keyed by variable name (caller
 * disposes).
 */
export function clipLossAndGrads(model: CLIP, images: tf.Tensor, tokens: tf.Tensor): { loss: tf.Scalar; grads: Record<string, tf.Tensor> } {
  const vars = model.trainableVariables();
  const { value, grads } = tf.variableGrads(() => {
    const img = l2normalize(model.encodeImage(images)) as tf.Tensor2D;
    const txt = l2normalize(model.encodeText(tokens)) as tf.Tensor2D;
    return clipLoss(img, txt, model.logitScaleExp());
  }, vars);
  return { loss: value, grads: grads as Record<string, tf.Tensor> };
}

/** One optimisation step: forward, backward, optional clipping, AdamW; no tensors are left behind. */
export function trainStep(model: CLIP, opt: AdamW, images: tf.Tensor, tokens: tf.Tensor, opts: { clip?: number } = {}): StepResult {
  const { loss, grads } = clipLossAndGrads(model, images, tokens);
  const gradNorm = opts.clip ? clipGradNorm(grads, opts.clip) : NaN;
  opt.apply(grads);
  const l = loss.dataSync()[0];
  loss.dispose();
  for (const g of Object.values(grads)) g.dispose();
  return { loss: l, gradNorm };
}
