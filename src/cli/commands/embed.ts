import type { Argv } from 'yargs';
import { withOptions, type OptionTable } from '../options.js';
import * as tf from '../../base/tf.js';
import { MclipError } from '../../errors.js';
import { readSafetensors, writeSafetensors } from '../../base/io/safetensors.js';
import { toFloat32, type StateDict, type TensorData } from '../../base/io/tensor-data.js';
import { loadModel } from '../../base/model/checkpoint.js';
import { l2normalize, type CLIP } from '../../base/model/clip.js';
import { ClipTokenizer, resolveVocabDir } from '../../base/tokenizer/index.js';
import { preprocessImage } from '../../base/preprocess/index.js';
import { preprocessFor } from '../../base/model/preprocess-table.js';
import { startBackend, type GlobalArgs } from '../run.js';
import { installTokenSettings, parseTokenArgs, textLayerCount, tokenFlags, TOKEN_OPTIONS, type TokenArgs } from '../token-options.js';

export interface EmbedArgs extends GlobalArgs, TokenArgs {
  arch?: string;
  checkpoint: string;
  fused?: boolean;
  inputs?: string;
  out?: string;
  images?: string[];
  texts?: string[];
  vocab?: string;
  batch: number;
  json?: boolean;
}

/** Image features of NCHW float32 pixels, batch by batch: [N, D]. */
export function embedImages(model: CLIP, data: Float32Array, shape: number[], batch: number): Float32Array {
  const [n, c, h, w] = shape;
  const d = model.cfg.embedDim;
  const out = new Float32Array(n * d);
  const per = c * h * w;
  for (let i = 0; i < n; i += batch) {
    const b = Math.min(batch, n - i);
    const y = tf.tidy(() => {
      const x = tf.tensor4d(data.subarray(i * per, (i + b) * per), [b, c, h, w]).transpose([0, 2, 3, 1]);
      return model.encodeImage(x);
    });
    out.set(y.dataSync() as Float32Array, i * d);
    y.dispose();
  }
  return out;
}

/** Text features of token rows, batch by batch: [N, D]. */
export function embedTexts(model: CLIP, ids: Int32Array, shape: number[], batch: number): Float32Array {
  const [n, l] = shape;
  const d = model.cfg.embedDim;
  const out = new Float32Array(n * d);
  for (let i = 0; i < n; i += batch) {
    const b = Math.min(batch, n - i);
    const y = tf.tidy(() => model.encodeText(tf.tensor2d(ids.subarray(i * l, (i + b) * l), [b, l], 'int32')));
    out.set(y.dataSync() as Float32Array, i * d);
    y.dispose();
  }
  return out;
}

function checkImageInput(t: TensorData, model: CLIP, file: string): void {
  const s = t.shape;
  if (!(t.dtype === 'float32' || t.dtype === 'float16' || t.dtype === 'bfloat16' || t.dtype === 'float64')) {
    throw new MclipError(`${file}: 'image' must be a float tensor (N×3×H×W, values in [0,1]), got dtype ${t.dtype}`);
  }
  if (s.length !== 4 || s[1] !== 3) throw new MclipError(`${file}: 'image' must have shape [N, 3, H, W], got [${s.join(', ')}]`);
  const im = model.cfg.image;
  if (im.kind === 'mci' && (s[2] % 32 !== 0 || s[3] % 32 !== 0 || s[2] < 32 || s[3] < 32)) {
    throw new MclipError(`${file}: 'image' H and W must be positive multiples of 32 for ${im.name}, got ${s[2]}×${s[3]} (expected ${im.imageSize}×${im.imageSize})`);
  }
  if (im.kind === 'vit' && (s[2] % 16 !== 0 || s[3] % 16 !== 0)) {
    throw new MclipError(`${file}: 'image' H and W must be multiples of 16 for ${im.name}, got ${s[2]}×${s[3]}`);
  }
}

function tokensAsInt32(t: TensorData, model: CLIP, file: string): Int32Array {
  const s = t.shape;
  if (t.dtype !== 'int32' && t.dtype !== 'int64') throw new MclipError(`${file}: 'tokens' must be int32 or int64, got ${t.dtype}`);
  const ctx = model.cfg.text.contextLength;
  if (s.length !== 2 || s[1] !== ctx) throw new MclipError(`${file}: 'tokens' must have shape [N, ${ctx}], got [${s.join(', ')}]`);
  const out = new Int32Array(t.data.length);
  const vocab = model.cfg.text.vocabSize;
  for (let i = 0; i < out.length; i++) {
    const v = Number(t.data[i]);
    if (!Number.isInteger(v) || v < 0 || v >= vocab) throw new MclipError(`${file}: 'tokens' holds id ${v} at flat index ${i}, outside the vocabulary [0, ${vocab})`);
    out[i] = v;
  }
  return out;
}

/**
 * A similarity matrix with short unambiguous headers (`i1`, `t2`, …) and a key that gives each its full
 * image path or text, so long paths and texts with a common prefix never collide or get cut.
 */
export function formatMatrix(rows: { prefix: string; names: readonly string[] }, cols: { prefix: string; names: readonly string[] }, m: number[][]): string {
  const id = (p: string, i: number) => `${p}${i + 1}`;
  const w = Math.max(...rows.names.map((_, i) => id(rows.prefix, i).length)) + 2;
  const cw = Math.max(9, ...cols.names.map((_, j) => id(cols.prefix, j).length + 2));
  const lines = [' '.repeat(w) + cols.names.map((_, j) => id(cols.prefix, j).padStart(cw)).join('')];
  rows.names.forEach((_, i) => lines.push(id(rows.prefix, i).padEnd(w) + m[i]!.map((v) => v.toFixed(4).padStart(cw)).join('')));
  const key = (side: { prefix: string; names: readonly string[] }) => side.names.map((n, i) => `  ${id(side.prefix, i)} = ${side.prefix === 't' ? JSON.stringify(n) : n}`);
  lines.push(...key(rows));
  if (cols.prefix !== rows.prefix) lines.push(...key(cols));
  return lines.join('\n');
}

export async function runEmbed(args: EmbedArgs): Promise<void> {
  const haveFiles = (args.images?.length ?? 0) > 0 || (args.texts?.length ?? 0) > 0;
  if (!args.inputs && !haveFiles) throw new MclipError('give --inputs IN.safetensors --out OUT.safetensors, or --images/--texts');
  if (args.inputs && !args.out) throw new MclipError('--inputs needs --out OUT.safetensors');
  if (!Number.isInteger(args.batch) || args.batch < 1) throw new MclipError(`--batch must be a positive integer, got ${args.batch}`);
  parseTokenArgs(args, Number.MAX_SAFE_INTEGER); // the token flags' form, before the model loads (the layer range: after)
  // Validate the input file before the (slow) model load.
  const inputs: StateDict | null = args.inputs ? readSafetensors(args.inputs).tensors : null;
  if (inputs && !inputs.has('image') && !inputs.has('tokens')) throw new MclipError(`${args.inputs}: holds neither 'image' nor 'tokens'`);
  await startBackend(args);
  const { model } = await loadModel(args.checkpoint, { arch: args.arch, fused: args.fused });
  let tokenHooks: ReturnType<typeof installTokenSettings> | undefined;
  try {
    const tokens = parseTokenArgs(args, textLayerCount(model));
    tokenHooks = installTokenSettings(model, tokens);
    if (inputs && args.inputs && args.out) {
      const out: StateDict = new Map();
      const d = model.cfg.embedDim;
      const img = inputs.get('image');
      if (img) {
        checkImageInput(img, model, args.inputs);
        const f = embedImages(model, toFloat32(img), img.shape, args.batch);
        out.set('image_features', { dtype: 'float32', shape: [img.shape[0], d], data: f });
      }
      const tok = inputs.get('tokens');
      if (tok) {
        const ids = tokensAsInt32(tok, model, args.inputs);
        const f = embedTexts(model, ids, tok.shape, args.batch);
        out.set('text_features', { dtype: 'float32', shape: [tok.shape[0], d], data: f });
      }
      writeSafetensors(args.out, out, { checkpoint: args.checkpoint, fused: String(Boolean(args.fused)), text_padding: tokens.padding, text_tokens: tokenFlags(tokens).join(' ') || 'as-trained' });
      console.error(`mclip: wrote ${[...out.keys()].join(', ')} to ${args.out}`);
    }
    if (haveFiles) {
      const images = args.images ?? [];
      const texts = args.texts ?? [];
      const size = model.cfg.image.imageSize;
      // Check the tokenizer against the model before spending time on the images.
      let tok: ClipTokenizer | null = null;
      if (texts.length) {
        const vocabDir = resolveVocabDir(args.vocab);
        tok = ClipTokenizer.fromDir(vocabDir);
        if (tok.vocabSize !== model.cfg.text.vocabSize) {
          throw new MclipError(
            `tokenizer in ${vocabDir} has ${tok.vocabSize} ids but the model's text vocabulary has ${model.cfg.text.vocabSize}; use the vocab the model was trained with`,
          );
        }
      }
      let imgFeat: tf.Tensor2D | null = null;
      let txtFeat: tf.Tensor2D | null = null;
      if (images.length) {
        const pix = new Float32Array(images.length * 3 * size * size);
        for (let i = 0; i < images.length; i++) pix.set(await preprocessImage(images[i], size, preprocessFor(model.cfg)), i * 3 * size * size);
        const f = embedImages(model, pix, [images.length, 3, size, size], args.batch);
        imgFeat = tf.tidy(() => l2normalize(tf.tensor2d(f, [images.length, model.cfg.embedDim])) as tf.Tensor2D);
      }
      if (tok) {
        const ctx = model.cfg.text.contextLength;
        const ids = tok.tokenize(texts, ctx);
        const f = embedTexts(model, ids, [texts.length, ctx], args.batch);
        txtFeat = tf.tidy(() => l2normalize(tf.tensor2d(f, [texts.length, model.cfg.embedDim])) as tf.Tensor2D);
      }
      if (imgFeat && txtFeat) {
        const sim = tf.matMul(imgFeat, txtFeat, false, true);
        const m = sim.arraySync() as number[][];
        const probs = tf.tidy(() => tf.softmax(sim.mul(model.logitScaleExp()), -1).arraySync() as number[][]);
        sim.dispose();
        if (args.json) console.log(JSON.stringify({ images, texts, cosine: m, probs }));
        else {
          console.log('cosine similarity (image × text):');
          console.log(formatMatrix({ prefix: 'i', names: images }, { prefix: 't', names: texts }, m));
          console.log('\nzero-shot probabilities over the texts:');
          console.log(formatMatrix({ prefix: 'i', names: images }, { prefix: 't', names: texts }, probs));
        }
      } else {
        const f = (imgFeat ?? txtFeat)!;
        const names = imgFeat ? images : texts;
        const side = { prefix: imgFeat ? 'i' : 't', names };
        const m = tf.tidy(() => tf.matMul(f, f, false, true).arraySync() as number[][]);
        if (args.json) console.log(JSON.stringify({ items: names, cosine: m }));
        else console.log(formatMatrix(side, side, m));
      }
      imgFeat?.dispose();
      txtFeat?.dispose();
    }
  } finally {
    tokenHooks?.remove();
    model.dispose();
  }
}

export const EMBED_OPTIONS = {
  arch: { type: 'string', describe: 'architecture (mobileclip_s0, _s1, _s2, _b, mobileclip_tiny, …) for checkpoints without a config' },
  checkpoint: { type: 'string', demandOption: true, describe: 'official .pt, safetensors, or an mclip checkpoint' },
  fused: { type: 'boolean', default: false, describe: 'reparameterise before running (official inference path)' },
  inputs: { type: 'string', describe: "safetensors with 'image' (N×3×H×W float32) and/or 'tokens' (N×77 int)" },
  out: { type: 'string', describe: "safetensors to write 'image_features' / 'text_features' to" },
  images: { type: 'string', array: true, describe: 'image files (printed as a similarity matrix)' },
  texts: { type: 'string', array: true, describe: 'texts (printed as a similarity matrix)' },
  vocab: { type: 'string', describe: 'tokenizer folder (else $MCLIP_VOCAB)' },
  batch: { type: 'number', default: 16, describe: 'batch size' },
  json: { type: 'boolean', default: false, describe: 'print JSON' },
  ...TOKEN_OPTIONS,
} as const satisfies OptionTable;

export function embedCommand(y: Argv): Argv {
  return y.command<EmbedArgs>(
    'embed',
    'image/text features of a checkpoint (as the official encode_image / encode_text)',
    (a) =>
      withOptions(a, EMBED_OPTIONS) as unknown as Argv<EmbedArgs>,
    (args) => runEmbed(args),
  );
}
