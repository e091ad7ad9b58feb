/**
 * open_clip's key layout of a MobileCLIP(2) checkpoint, as a renaming of ours: `visual.trunk.*` is timm's
 * FastViT-MCi (`stem`, `stages.i.{downsample,pos_emb,blocks.j}`, `final_conv`, `head.fc`) or ViT (`vit_base_mci_224`:
 * `patch_embed.backbone`; `vit_large_patch14_clip_224`: `patch_embed.proj`, `norm_pre`; then `blocks.i`, `norm`,
 * `head`) and `text.*` open_clip's
 * `TextTransformer` (`token_embedding`, `positional_embedding`, `transformer.resblocks.i.{ln_1,attn,ln_2,mlp}`,
 * `ln_final`, `text_projection`). The modules are the same computation as ours (ml-mobileclip's), so a model is
 * built from our modules and only the names (and two layouts: the timm head's `fc.weight` is our `head.proj`
 * transposed, the positional tables lose their leading 1s) change. Every key of ours maps to
 * exactly one of theirs; a key with no open_clip counterpart is a one-line error naming it.
 */
import { MclipError } from '../../../errors.js';
import type { TensorData } from '../../io/tensor-data.js';
import { allocArray } from '../../io/tensor-data.js';
import { mciStages, type ClipConfig } from '../configs.js';

/**
 * How a tensor's layout differs between the two names of one parameter: the same, transposed (a timm head's
 * `weight` [out, in] is our `proj` [in, out]), or the same values with leading 1s dropped to rank 2 or 3 (our
 * positional tables are [1, 1, N, C]; open_clip's text one is [N, C], timm's ViT one [1, N, C]).
 */
export type KeyTransform = 'same' | 'transpose' | 'rank2' | 'rank3';

export interface KeyRule {
  /** open_clip's key. */
  key: string;
  transform: KeyTransform;
}

/** Where open_clip puts the text tower: `text.` (CustomTextCLIP, MobileCLIP's configs) or the top level (CLIP). */
export type TextPrefix = 'text.' | '';

export const OC_IMAGE = 'visual.trunk.';
const OUR_IMAGE = 'image_encoder.model.';
const OUR_TEXT = 'text_encoder.';

/** Inner names of a MobileOneBlock: ml-mobileclip `rbr_*` ↔ timm `conv_kxk` / `conv_scale` / `identity`, SE `reduce/expand` ↔ `fc1/fc2`. */
function mobileOne(rest: string): string | null {
  const rules: Array<[RegExp, string]> = [
    [/^rbr_conv\.(\d+)\.(conv|bn)\.(.+)$/, 'conv_kxk.$1.$2.$3'],
    [/^rbr_scale\.(conv|bn)\.(.+)$/, 'conv_scale.$1.$2'],
    [/^rbr_skip\.(.+)$/, 'identity.$1'],
    [/^reparam_conv\.(weight|bias)$/, 'reparam_conv.$1'],
    [/^se\.reduce\.(weight|bias)$/, 'se.fc1.$1'],
    [/^se\.expand\.(weight|bias)$/, 'se.fc2.$1'],
  ];
  for (const [re, to] of rules) if (re.test(rest)) return rest.replace(re, to);
  return null;
}

/** A FastViT block (RepMixer or attention) below `blocks.j.`. */
function block(rest: string): string | null {
  if (rest === 'layer_scale' || rest === 'layer_scale_1' || rest === 'layer_scale_2' || rest === 'token_mixer.layer_scale') return `${rest}.gamma`;
  let m = /^convffn\.(.+)$/.exec(rest);
  if (m) return /^(conv\.(conv|bn)\.|fc1\.|fc2\.)/.test(m[1]) ? `mlp.${m[1]}` : null;
  m = /^token_mixer\.(norm|mixer)\.(.+)$/.exec(rest);
  if (m) {
    const inner = mobileOne(m[2]);
    return inner === null ? null : `token_mixer.${m[1]}.${inner}`;
  }
  if (/^token_mixer\.(reparam_conv\.(weight|bias)|qkv\.weight|proj\.(weight|bias))$/.test(rest)) return rest;
  if (/^norm\.(weight|bias|running_mean|running_var|num_batches_tracked)$/.test(rest)) return rest;
  return null;
}

/** A PatchEmbed downsampler below `downsample.`: `lkb_origin` ↔ `large_conv`, `lkb_reparam` ↔ `reparam_conv`. */
function downsample(rest: string): string | null {
  let m = /^proj\.0\.lkb_origin\.(conv|bn)\.(.+)$/.exec(rest);
  if (m) return `proj.0.large_conv.${m[1]}.${m[2]}`;
  if (/^proj\.0\.small_conv\.(conv|bn)\.|^proj\.0\.se\.(fc1|fc2)\.(weight|bias)$/.test(rest)) return rest;
  m = /^proj\.0\.lkb_reparam\.(weight|bias)$/.exec(rest);
  if (m) return `proj.0.reparam_conv.${m[1]}`;
  m = /^proj\.1\.(.+)$/.exec(rest);
  if (m) {
    const inner = mobileOne(m[1]);
    return inner === null ? null : `proj.1.${inner}`;
  }
  return null;
}

/** What each `network.<n>` of our MCi tower is, in timm's terms (the order FastViT builds them in). */
function networkTable(cfg: ClipConfig): Map<number, string> {
  const table = new Map<number, string>();
  if (cfg.image.kind !== 'mci') return table;
  const stages = mciStages(cfg.image);
  let n = 0;
  stages.forEach((s, i) => {
    if (s.posEmb) table.set(n++, `stages.${i}.pos_emb.`);
    table.set(n++, `stages.${i}.blocks.`);
    if (i + 1 < stages.length) table.set(n++, `stages.${i + 1}.downsample.`);
  });
  return table;
}

function imageKey(rest: string, table: Map<number, string>): KeyRule | null {
  const same = (key: string | null): KeyRule | null => (key === null ? null : { key: OC_IMAGE + key, transform: 'same' });
  if (rest === 'head.proj') return { key: `${OC_IMAGE}head.fc.weight`, transform: 'transpose' };
  if (rest === 'head.bias') return same('head.fc.bias');
  let m = /^patch_embed\.(\d+)\.(.+)$/.exec(rest);
  if (m) {
    const inner = mobileOne(m[2]);
    return same(inner === null ? null : `stem.${m[1]}.${inner}`);
  }
  m = /^conv_exp\.(.+)$/.exec(rest);
  if (m) {
    const inner = mobileOne(m[1]);
    return same(inner === null ? null : `final_conv.${inner}`);
  }
  m = /^network\.(\d+)\.(.+)$/.exec(rest);
  if (!m) return null;
  const where = table.get(Number(m[1]));
  if (where === undefined) return null;
  const inner = m[2];
  if (where.endsWith('.pos_emb.')) {
    if (inner === 'pe.weight' || inner === 'pe.bias') return same(`${where}pos_enc.${inner.slice(3)}`);
    if (inner === 'reparam_conv.weight' || inner === 'reparam_conv.bias') return same(where + inner);
    return null;
  }
  if (where.endsWith('.downsample.')) {
    const d = downsample(inner);
    return same(d === null ? null : where + d);
  }
  const b = /^(\d+)\.(.+)$/.exec(inner);
  if (!b) return null;
  const r = block(b[2]);
  return same(r === null ? null : `${where}${b[1]}.${r}`);
}

/**
 * timm's `vit_base_mci_224` (open_clip's MobileCLIP-B trunk): the ConvStem under `patch_embed.backbone`, pre-LN
 * `blocks.i.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}`, the final `norm`, `head` (the renaming timm's own
 * ml-mobileclip converter applies).
 */
function vitKey(rest: string, patchStem: boolean): KeyRule | null {
  const same = (key: string): KeyRule => ({ key: OC_IMAGE + key, transform: 'same' });
  // timm's CLIP ViT (`vit_large_patch14_clip_224`): `patch_embed.proj` and `norm_pre`.
  if (patchStem && rest === 'patch_emb.0.block.conv.weight') return same('patch_embed.proj.weight');
  if (patchStem && (rest === 'pre_transformer_norm.weight' || rest === 'pre_transformer_norm.bias')) return same(`norm_pre.${rest.slice('pre_transformer_norm.'.length)}`);
  if (rest === 'cls_token') return same('cls_token');
  if (rest === 'pos_embed.pos_embed.pos_embed') return { key: `${OC_IMAGE}pos_embed`, transform: 'rank3' };
  if (rest === 'classifier.proj') return { key: `${OC_IMAGE}head.weight`, transform: 'transpose' };
  if (rest === 'classifier.bias') return same('head.bias');
  let m = /^post_transformer_norm\.(weight|bias)$/.exec(rest);
  if (m) return same(`norm.${m[1]}`);
  m = /^patch_emb\.(\d+)\.block\.(conv|norm)\.(.+)$/.exec(rest);
  if (m) return same(`patch_embed.backbone.${m[1]}.${m[2] === 'conv' ? 'conv' : 'bn'}.${m[3]}`);
  m = /^transformer\.(\d+)\.(.+)$/.exec(rest);
  if (!m) return null;
  const inner: Record<string, string> = {
    'pre_norm_mha.0': 'norm1',
    'pre_norm_mha.1.qkv_proj': 'attn.qkv',
    'pre_norm_mha.1.out_proj': 'attn.proj',
    'pre_norm_ffn.0': 'norm2',
    'pre_norm_ffn.1': 'mlp.fc1',
    'pre_norm_ffn.4': 'mlp.fc2',
  };
  const p = /^(.+)\.(weight|bias)$/.exec(m[2]);
  const to = p ? inner[p[1]] : undefined;
  return to === undefined || !p ? null : same(`blocks.${m[1]}.${to}.${p[2]}`);
}

function textKey(rest: string, prefix: TextPrefix): KeyRule | null {
  const same = (key: string): KeyRule => ({ key: prefix + key, transform: 'same' });
  if (rest === 'embedding_layer.weight') return same('token_embedding.weight');
  if (rest === 'positional_embedding.pos_embed.pos_embed') return { key: `${prefix}positional_embedding`, transform: 'rank2' };
  if (rest === 'projection_layer') return same('text_projection');
  let m = /^final_layer_norm\.(weight|bias)$/.exec(rest);
  if (m) return same(`ln_final.${m[1]}`);
  m = /^transformer\.(\d+)\.(.+)$/.exec(rest);
  if (!m) return null;
  const r = `transformer.resblocks.${m[1]}.`;
  const inner: Record<string, string> = {
    'pre_norm_mha.0.weight': 'ln_1.weight',
    'pre_norm_mha.0.bias': 'ln_1.bias',
    'pre_norm_mha.1.qkv_proj.weight': 'attn.in_proj_weight',
    'pre_norm_mha.1.qkv_proj.bias': 'attn.in_proj_bias',
    'pre_norm_mha.1.out_proj.weight': 'attn.out_proj.weight',
    'pre_norm_mha.1.out_proj.bias': 'attn.out_proj.bias',
    'pre_norm_ffn.0.weight': 'ln_2.weight',
    'pre_norm_ffn.0.bias': 'ln_2.bias',
    'pre_norm_ffn.1.weight': 'mlp.c_fc.weight',
    'pre_norm_ffn.1.bias': 'mlp.c_fc.bias',
    'pre_norm_ffn.4.weight': 'mlp.c_proj.weight',
    'pre_norm_ffn.4.bias': 'mlp.c_proj.bias',
  };
  const to = inner[m[2]];
  return to === undefined ? null : same(r + to);
}

/**
 * open_clip's key for each of our keys (`names`, in our order) of a model of config `cfg`. A key with no
 * open_clip counterpart (a RepMixer text block, QK-norm, …) is a one-line error naming it.
 */
export function openClipKeyMap(cfg: ClipConfig, names: Iterable<string>, textPrefix: TextPrefix, what: string): Map<string, KeyRule> {
  const table = networkTable(cfg);
  const out = new Map<string, KeyRule>();
  for (const name of names) {
    let rule: KeyRule | null = null;
    if (name === 'logit_scale') rule = { key: 'logit_scale', transform: 'same' };
    else if (name.startsWith(OUR_IMAGE) && cfg.image.kind === 'mci') rule = imageKey(name.slice(OUR_IMAGE.length), table);
    else if (name.startsWith(OUR_IMAGE)) rule = vitKey(name.slice(OUR_IMAGE.length), cfg.image.kind === 'vit' && cfg.image.patchSize !== undefined);
    else if (name.startsWith(OUR_TEXT)) rule = textKey(name.slice(OUR_TEXT.length), textPrefix);
    if (!rule) throw new MclipError(`${what}: '${name}' has no counterpart in open_clip's layout (a ${cfg.image.kind === 'mci' ? 'FastViT-MCi' : 'timm ViT'} trunk and open_clip's TextTransformer)`);
    out.set(name, rule);
  }
  return out;
}

/** The open_clip shape of a tensor whose shape is `ours` under `t`. */
export function theirShape(ours: readonly number[], t: KeyTransform): number[] {
  if (t === 'transpose') return [ours[1], ours[0]];
  if (t === 'rank2') return ours.slice(-2);
  if (t === 'rank3') return ours.slice(-3);
  return ours.slice();
}

/** A 2-D tensor transposed, in its own dtype (bit-exact). */
function transpose2d(t: TensorData): TensorData {
  const [r, c] = t.shape;
  const out = allocArray(t.dtype, r * c);
  const src = t.data;
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = src[i * c + j];
  return { dtype: t.dtype, shape: [c, r], data: out };
}

/** `t` (open_clip's layout) in our layout of shape `ours`, or (`toTheirs`) ours back into theirs; bit-exact either way. */
export function convertTensor(t: TensorData, transform: KeyTransform, target: readonly number[]): TensorData {
  if (transform === 'transpose') return transpose2d(t);
  if (transform === 'rank2' || transform === 'rank3') return { dtype: t.dtype, shape: target.slice(), data: t.data };
  return t;
}
