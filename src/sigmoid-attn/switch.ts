import * as tf from '../base/tf.js';
import { MclipError } from '../errors.js';
import { CLIP } from '../base/model/clip.js';
import { withSigmoidAttention, type SigmoidOptions } from './config.js';

/**
 * A trained (softmax) model switched to sigmoid attention (methods.md §5): a new model of the same
 * structure with `withSigmoidAttention(model.cfg, opts)` — kernel 'sigmoid' and b = −ln n recorded per
 * layer, plus the stabilisers asked for — holding a copy of every weight of `model`. The new stabiliser
 * norms start as the identity affine (weight 1, bias 0). The function changes (no row normalisation), so
 * plan on fine-tuning, e.g. distilling from `model`. `inferenceMode`: build the fused form (for a fused
 * source). `model` is left as it was.
 */
export function switchToSigmoid(model: CLIP, opts: SigmoidOptions & { inferenceMode?: boolean } = {}): CLIP {
  const { inferenceMode, ...sigmoid } = opts;
  const out = new CLIP(withSigmoidAttention(model.cfg, sigmoid), { inferenceMode: inferenceMode ?? false });
  const source = new Map(model.namedParams());
  const used = new Set<string>();
  for (const [name, p] of out.namedParams()) {
    const src = source.get(name);
    if (!src) continue;
    if (src.variable.shape.join(',') !== p.variable.shape.join(',')) {
      throw new MclipError(`switch to sigmoid: '${name}' is [${src.variable.shape.join(', ')}] in the source, [${p.variable.shape.join(', ')}] in the switched model`);
    }
    tf.tidy(() => p.variable.assign(src.variable.clone()));
    used.add(name);
  }
  const left = [...source.keys()].filter((k) => !used.has(k));
  if (left.length > 0) {
    out.dispose();
    throw new MclipError(`switch to sigmoid: ${left.length} source tensors have no place in the switched model (first: '${left[0]}'; a fused source needs inferenceMode)`);
  }
  if (model.training) out.train();
  else out.eval();
  return out;
}
