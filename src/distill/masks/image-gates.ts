/**
 * Learnable TinyCLIP masks on an MCi image tower (methods.md §3.3, §3.4, §3.8): hard-concrete gates for the
 * stage channels, the ConvFFN hidden channels of every block and the heads of every attention block, put on
 * the model through `applyImageMasks`.
 *
 * The PatchEmbed coupling (§3.8, `imageCoupling`): the pruned PatchEmbed's grouped conv needs every kept channel
 * of stage s − 1 to keep the same number (≥ 1) of its m = C_s / C_{s−1} children in stage s, and no kept child
 * of a pruned parent. Independent gates per channel would break that, so the stage channels are parameterised to
 * satisfy it by construction: stage 0 has one gate per channel, and stage s ≥ 1 one gate per *slot* j < m,
 * shared by all parents — channel p·m + j of stage s is z_s[p·m + j] = 1[z_{s−1}[p] ≠ 0] · g_s[j]. A stage's
 * width is thus (kept channels of stage 0) × Π (kept slots): the stage-0 gate sets the tower's width, the slot
 * gates halve a stage or not, and the head and ConvFFN gates prune inside the blocks. The deterministic slot
 * mask keeps at least one slot (an empty stage is no model).
 *
 * Sampling as `TextGates`: a pre-forward hook on the image tower draws one sample per forward in train mode
 * (shared by the batch, inside the step's gradient tape), the deterministic masks in eval mode.
 *
 * Counted (N₀): every block of every stage (RepMixer blocks, attention blocks, their ConvFFNs and layer scales;
 * expected-size.ts). Not counted, like TinyCLIP's embeddings: the stem, the PatchEmbeds, the RepCPEs, `conv_exp`
 * and the head, although the channel masks shrink them too (the model's real parameter count shows it). The keep
 * probability of channel p·m + j of stage s is P(parent kept)·P(slot j kept), the parents' from stage s − 1.
 */
import * as tf from '../../base/tf.js';
import { MclipError } from '../../errors.js';
import type { CLIP } from '../../base/model/clip.js';
import { FastViT } from '../../base/model/mci.js';
import { Sequential } from '../../base/nn/module.js';
import { AttentionBlock } from '../../base/layers/attention-block.js';
import { RepMixerBlock } from '../../base/layers/repmixer-block.js';
import { HC_BETA, HC_DETERMINISTIC_SCALE, HardConcreteGate } from './hard-concrete.js';
import { GateSet, maskTensor, type GateOptions, type Indicator } from './gate-set.js';
import { attentionBlockGeometry, attentionBlockSize, repMixerBlockGeometry, repMixerBlockSize, sumSizes, type SizeTerm } from './expected-size.js';
import { applyImageMasks, imageMaskSizes, type AppliedImageMasks, type ImageMaskSet, type ImageMaskSizes, type ImageMaskValues } from './image-masks.js';
import { pruneImage } from './prune-image.js';
import type { TowerGates } from './tower-gates.js';

interface BlockGates {
  heads?: HardConcreteGate;
  ffn: HardConcreteGate;
}

export interface ImageGateOptions extends GateOptions {
  /** Mask the stage channels (default true); false leaves every stage at its width and prunes inside blocks only. */
  channels?: boolean;
}

let instances = 0;

/** The blocks of every stage, in `imageMaskSizes` order. */
function stageBlocks(model: CLIP, sizes: ImageMaskSizes): Array<Array<RepMixerBlock | AttentionBlock>> {
  const m = model.imageEncoder.model;
  if (!(m instanceof FastViT)) throw new MclipError(`image gates: the image tower is a ${m.constructor.name}; gates apply to MCi (FastViT) towers`);
  const net = m.network.modules();
  return sizes.stages.map((st) => {
    const stage = net[st.network];
    if (!(stage instanceof Sequential)) throw new Error(`internal: MCi network.${st.network} is not a stage`);
    return stage.modules().map((b, j) => {
      if (b instanceof RepMixerBlock || b instanceof AttentionBlock) return b;
      throw new MclipError(`image gates: network.${st.network}.${j} is a ${b.constructor.name}`);
    });
  });
}

/** The deterministic slot mask, with at least one slot kept (the one of the largest value). */
function atLeastOne(z: Float32Array, logAlpha: Float32Array): Float32Array {
  if (z.some((v) => v !== 0)) return z;
  let best = 0;
  for (let j = 1; j < logAlpha.length; j++) if (logAlpha[j] > logAlpha[best]) best = j;
  const out = new Float32Array(z.length);
  out[best] = 1 / (1 + Math.exp(-(HC_DETERMINISTIC_SCALE * logAlpha[best]) / HC_BETA));
  return out;
}

export class ImageGates extends GateSet<ImageMaskSet, ImageMaskValues> implements TowerGates {
  readonly tower = 'image' as const;
  /** Stage 0's channel gate [C_0], then each later stage's slot gate [m_s] (null: stage channels not masked). */
  readonly channels: HardConcreteGate[] | null;
  readonly blocks: BlockGates[][];
  private readonly sizes: ImageMaskSizes;
  private readonly mult: number[];

  constructor(model: CLIP, opts: ImageGateOptions = {}) {
    super(model, opts.seed ?? 0, 'image gates');
    this.sizes = imageMaskSizes(model);
    const name = opts.name ?? `image_gates_${instances++}`;
    const init = opts.initLogAlpha;
    const st = this.sizes.stages;
    this.mult = st.map((s, i) => (i === 0 ? 1 : s.channels / st[i - 1].channels));
    this.mult.forEach((m, i) => {
      if (!Number.isInteger(m)) throw new MclipError(`image gates: stage ${i} (${st[i].channels} channels) is not a multiple of stage ${i - 1} (${st[i - 1].channels})`);
    });
    this.channels = opts.channels === false ? null : st.map((s, i) => new HardConcreteGate(i === 0 ? s.channels : this.mult[i], { name: `${name}_stage${i}_${i === 0 ? 'channels' : 'slots'}`, initLogAlpha: init }));
    this.blocks = st.map((s, i) =>
      s.blocks.map((b, j) => ({
        heads: b.heads != null ? new HardConcreteGate(b.heads, { name: `${name}_${i}_${j}_heads`, initLogAlpha: init }) : undefined,
        ffn: new HardConcreteGate(b.ffn, { name: `${name}_${i}_${j}_ffn`, initLogAlpha: init }),
      })),
    );
  }

  protected gates(): HardConcreteGate[] {
    return [...(this.channels ?? []), ...this.blocks.flat().flatMap((b) => (b.heads ? [b.heads, b.ffn] : [b.ffn]))];
  }

  protected applyMasks(set: ImageMaskSet): AppliedImageMasks {
    return applyImageMasks(this.model, set);
  }

  protected maskTensors(set: ImageMaskSet): Array<tf.Tensor1D | undefined> {
    return set.stages.flatMap((s) => [s.channels, ...s.blocks.flatMap((b) => [b?.heads, b?.ffn])]);
  }

  /** Stage channel masks from stage 0's mask and the slot masks: z_s[p·m + j] = 1[z_{s−1}[p]]·g_s[j]. */
  private chain(first: tf.Tensor1D, slots: readonly tf.Tensor1D[]): tf.Tensor1D[] {
    const out = [first];
    for (const g of slots) {
      const parent = out[out.length - 1];
      out.push(tf.tidy(() => tf.sign(tf.abs(parent)).reshape([-1, 1]).mul(g.reshape([1, -1])).reshape([-1]) as tf.Tensor1D));
    }
    return out;
  }

  /** One sample of every gate (drawn inside the step's tape); `extra`: the slot samples the channel masks were built from. */
  protected sampleSet(): { set: ImageMaskSet; extra: tf.Tensor[] } {
    const s = (g: HardConcreteGate) => this.draw(g);
    let ch: tf.Tensor1D[] | null = null;
    let extra: tf.Tensor[] = [];
    if (this.channels) {
      const raw = this.channels.map(s);
      ch = this.chain(raw[0], raw.slice(1));
      extra = raw.slice(1);
    }
    return { set: { stages: this.blocks.map((bs, i) => ({ channels: ch?.[i], blocks: bs.map((b) => ({ heads: b.heads ? s(b.heads) : undefined, ffn: s(b.ffn) })) })) }, extra };
  }

  protected deterministicSet(): ImageMaskSet {
    const v = this.deterministic();
    const t = maskTensor;
    return { stages: v.stages.map((st) => ({ channels: t(st.channels), blocks: st.blocks.map((b) => (b ? { heads: t(b.heads), ffn: t(b.ffn) } : null)) })) };
  }

  /** The deterministic masks (§3.7 step 1, with the slot parameterisation above), for pruning. */
  deterministic(countShift = 0): ImageMaskValues {
    let ch: Float32Array[] | null = null;
    if (this.channels) {
      const [first, ...slots] = this.channels;
      ch = [first.deterministic(countShift)];
      for (const g of slots) {
        const z = atLeastOne(g.deterministic(countShift), g.logAlpha.dataSync() as Float32Array);
        const parent = ch[ch.length - 1];
        const out = new Float32Array(parent.length * z.length);
        for (let p = 0; p < parent.length; p++) for (let j = 0; j < z.length; j++) out[p * z.length + j] = parent[p] !== 0 ? z[j] : 0;
        ch.push(out);
      }
    }
    return { stages: this.blocks.map((bs, i) => ({ channels: ch?.[i], blocks: bs.map((b) => ({ heads: b.heads?.deterministic(countShift), ffn: b.ffn.deterministic(countShift) })) })) };
  }

  /** Keep probabilities of every stage's channels (P(parent kept)·P(slot kept)); null when not masked. */
  private channelProbs(): tf.Tensor1D[] | null {
    if (!this.channels) return null;
    const out = [this.channels[0].keepProbability() as tf.Tensor1D];
    for (const g of this.channels.slice(1)) out.push(out[out.length - 1].reshape([-1, 1]).mul(g.keepProbability().reshape([1, -1])).reshape([-1]) as tf.Tensor1D);
    return out;
  }

  expectedSize(): SizeTerm {
    return this.sizeOf(
      this.channelProbs(),
      this.blocks.map((bs) => bs.map((g) => ({ heads: g.heads?.keepProbability(), ffn: g.ffn.keepProbability() }))),
    );
  }

  protected indicatorSize(v: ImageMaskValues, ind: Indicator): SizeTerm {
    const ch = this.channels ? v.stages.map((st) => ind(st.channels)!) : null;
    return this.sizeOf(ch, v.stages.map((st) => st.blocks.map((b) => ({ heads: ind(b?.heads), ffn: ind(b?.ffn) }))));
  }

  /** The size formulas of every block at per-unit keep probabilities (or indicators): channels per stage, heads/ffn per block. */
  private sizeOf(channels: tf.Tensor[] | null, blocks: ReadonlyArray<ReadonlyArray<{ heads?: tf.Tensor; ffn?: tf.Tensor }>>): SizeTerm {
    let full = 0;
    const expected = tf.tidy(() => {
      const parts = stageBlocks(this.model, this.sizes).flatMap((bs, i) =>
        bs.map((m, j) => {
          const g = blocks[i][j];
          const c = channels?.[i];
          if (m instanceof AttentionBlock) return attentionBlockSize({ channels: c, heads: g.heads, ffn: g.ffn }, attentionBlockGeometry(m));
          return repMixerBlockSize({ channels: c, ffn: g.ffn }, repMixerBlockGeometry(m));
        }),
      );
      const sum = sumSizes(parts);
      full = sum.full;
      return sum.expected;
    });
    return { expected, full };
  }

  prune(model: CLIP, countShift = 0): CLIP {
    return pruneImage(model, this.deterministic(countShift)).model;
  }
}

/** N₀ of an MCi image tower: its prunable parameter count (every block, every mask open). */
export function imagePrunableSize(model: CLIP): number {
  const sizes = imageMaskSizes(model);
  return tf.tidy(() => {
    const parts = stageBlocks(model, sizes).flatMap((bs) => bs.map((m) => (m instanceof AttentionBlock ? attentionBlockSize({}, attentionBlockGeometry(m)) : repMixerBlockSize({}, repMixerBlockGeometry(m)))));
    const s = sumSizes(parts);
    tf.dispose(parts.map((p) => p.expected));
    return s.full;
  });
}
