import * as tf from '../tf.js';
import { Module } from '../nn/module.js';
import type { ForwardContext } from '../nn/context.js';
import { Initializer } from '../nn/init.js';
import { FastViT } from './mci.js';
import { VisionTransformer } from './vit.js';
import { TextTransformer } from './text-transformer.js';
import type { ClipConfig } from './configs.js';

/** The official `MCi` wrapper: the timm model lives under `model`. */
export class ImageEncoder extends Module {
  constructor(cfg: ClipConfig, opts: { inferenceMode?: boolean; init?: Initializer }) {
    super();
    const m = cfg.image.kind === 'mci' ? new FastViT(cfg.image, cfg.embedDim, opts) : new VisionTransformer(cfg.image, cfg.embedDim, opts);
    this.addModule('model', m);
  }

  /** The timm-style tower (FastViT for MCi, VisionTransformer for ViT-B). */
  get model(): FastViT | VisionTransformer {
    const m = this.sub('model');
    if (m instanceof FastViT || m instanceof VisionTransformer) return m;
    throw new Error(`image_encoder.model is a ${m.constructor.name}, expected FastViT or VisionTransformer`);
  }

  /** NHWC images in [0, 1] → [B, embedDim]. */
  forward(x: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    return this.sub('model').call(x, ctx);
  }
}

export interface ClipOptions {
  /** Build the fused (inference) structure directly, e.g. to load a fused checkpoint. */
  inferenceMode?: boolean;
  /** Seed of the random initialisation. */
  seed?: number;
}

/** MobileCLIP (`mobileclip/clip.py`): image encoder, text encoder and a scalar logit scale. */
export class CLIP extends Module {
  readonly cfg: ClipConfig;

  constructor(cfg: ClipConfig, opts: ClipOptions = {}) {
    super();
    this.cfg = cfg;
    const init = new Initializer(opts.seed ?? 0);
    this.addParam('logit_scale', tf.scalar(Math.log(1 / 0.07)), { noDecay: true });
    this.addModule('image_encoder', new ImageEncoder(cfg, { inferenceMode: opts.inferenceMode, init }));
    this.addModule('text_encoder', new TextTransformer(cfg.text, cfg.embedDim, { inferenceMode: opts.inferenceMode, init }));
  }

  get imageEncoder(): ImageEncoder {
    return this.childAs('image_encoder', ImageEncoder);
  }

  get textEncoder(): TextTransformer {
    return this.childAs('text_encoder', TextTransformer);
  }

  get logitScale(): tf.Variable {
    return this.param('logit_scale');
  }

  /** images NHWC [B, H, W, 3] in [0, 1] → [B, embedDim] (not normalised). */
  encodeImage(images: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    return this.sub('image_encoder').call(images, ctx);
  }

  /** tokens [B, S] int32 → [B, embedDim] (not normalised). */
  encodeText(tokens: tf.Tensor, ctx?: ForwardContext): tf.Tensor {
    return this.sub('text_encoder').call(tokens, ctx);
  }

  /** min(exp(logit_scale), 100), as the official forward. */
  logitScaleExp(): tf.Scalar {
    return tf.tidy(() => tf.minimum(tf.exp(this.logitScale), 100) as tf.Scalar);
  }

  /** L2-normalised image and text features plus the clamped scale (official `forward`). */
  forwardPair(images: tf.Tensor, tokens: tf.Tensor): { image: tf.Tensor2D; text: tf.Tensor2D; scale: tf.Scalar } {
    return tf.tidy(() => ({
      image: l2normalize(this.encodeImage(images)) as tf.Tensor2D,
      text: l2normalize(this.encodeText(tokens)) as tf.Tensor2D,
      scale: this.logitScaleExp(),
    }));
  }

  forward(x: tf.Tensor): tf.Tensor {
    return this.encodeImage(x);
  }
}

/** F.normalize(x, dim=-1) (eps 1e-12). */
export function l2normalize(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => x.div(tf.maximum(x.norm('euclidean', -1, true), 1e-12)));
}
