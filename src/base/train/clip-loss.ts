import * as tf from '../tf.js';

/**
 * Symmetric InfoNCE of CLIP (open_clip ClipLoss): logits = s · I Tᵀ with L2-normalised I, T;
 * loss = ½ (CE(logits, diag) + CE(logitsᵀ, diag)).
 */
export function clipLoss(image: tf.Tensor2D, text: tf.Tensor2D, scale: tf.Scalar): tf.Scalar {
  return tf.tidy(() => {
    const n = image.shape[0];
    const logits = tf.matMul(image, text, false, true).mul(scale) as tf.Tensor2D;
    const labels = tf.oneHot(tf.range(0, n, 1, 'int32'), n);
    const li = tf.losses.softmaxCrossEntropy(labels, logits);
    const lt = tf.losses.softmaxCrossEntropy(labels, logits.transpose());
    return li.add(lt).div(2) as tf.Scalar;
  });
}
