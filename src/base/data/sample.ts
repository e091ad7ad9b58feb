/**
 * Our image–text sample convention (webdataset shards, see shards.ts).
 *
 * One sample = three tar members sharing a key:
 *
 * | member         | content |
 * |----------------|---------|
 * | `<key>.png`    | the image: PNG, 8-bit RGB (no alpha; transparent sources are composited on a background) |
 * | `<key>.txt`    | the caption, UTF-8, one line (the "ground-truth" caption, cf. DataCompDR `txt`) |
 * | `<key>.json`   | `{"captions": string[], "labels": {"category": string, "subcategory"?: string, ...}, "source": {...}}` |
 *
 * - `captions`: alternative ("synthetic", cf. DataCompDR `syn.json`) captions, de-duplicated
 *   case-insensitively, never repeating the `txt` caption.
 * - `labels`: string → string; `category` is always present and is the class used for zero-shot
 *   classification (methods §6); `subcategory` and other keys are optional.
 * - `source`: free-form provenance (package, vendor, file, index, …).
 *
 * A dataset folder holds `train/` and `eval/` shard folders (`shard-000000.tar`, …) and a
 * `manifest.json` (see build.ts).
 */
import { MclipError } from '../../errors.js';
import { ShardReader, type ReadShardsOptions, type ShardReadSummary } from './shards.js';
import { join } from 'node:path';

export const IMAGE_TEXT_MEMBERS = ['png', 'txt', 'json'] as const;

export interface ImageTextSample {
  key: string;
  /** PNG bytes (RGB) */
  image: Uint8Array;
  caption: string;
  captions: string[];
  labels: Record<string, string>;
  source?: Record<string, unknown>;
}

/** What `encodeSample` needs (everything but the key). */
export type ImageTextContent = Omit<ImageTextSample, 'key'>;

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

function isPng(b: Uint8Array): boolean {
  return b.byteLength > 8 && PNG_SIGNATURE.every((v, i) => b[i] === v);
}

/** De-duplicates captions case-insensitively (after trimming and collapsing spaces), keeping the first spelling; drops `exclude` and empties. */
export function dedupeCaptions(captions: Iterable<string>, exclude: Iterable<string> = []): string[] {
  const norm = (s: string): string => s.trim().replace(/\s+/g, ' ');
  const seen = new Set<string>([...exclude].map((s) => norm(s).toLowerCase()));
  const out: string[] = [];
  for (const c of captions) {
    const n = norm(c);
    const k = n.toLowerCase();
    if (n.length === 0 || seen.has(k)) continue;
    seen.add(k);
    out.push(n);
  }
  return out;
}

/** Encodes a sample into its tar members (`png`, `txt`, `json`). */
export function encodeSample(s: ImageTextContent): Map<string, Uint8Array> {
  if (!isPng(s.image)) throw new MclipError('encodeSample: image is not PNG bytes');
  if (s.caption.trim().length === 0) throw new MclipError('encodeSample: empty caption');
  if (typeof s.labels.category !== 'string') throw new MclipError('encodeSample: labels.category (string) is required');
  const json = { captions: dedupeCaptions(s.captions, [s.caption]), labels: s.labels, source: s.source ?? {} };
  const enc = new TextEncoder();
  return new Map<string, Uint8Array>([
    ['png', s.image],
    ['txt', enc.encode(s.caption.replace(/\r?\n/g, ' ').trim())],
    ['json', enc.encode(JSON.stringify(json))],
  ]);
}

/** Decodes a sample's members; throws MclipError naming the shard/key/member on bad content. */
export function decodeSample(key: string, members: ReadonlyMap<string, Uint8Array>, shard = '(sample)'): ImageTextSample {
  const where = (m: string): string => `${shard}: sample "${key}" member "${m}"`;
  const image = members.get('png');
  if (!image) throw new MclipError(`${where('png')}: missing (expected PNG image)`);
  if (!isPng(image)) throw new MclipError(`${where('png')}: not a PNG file`);
  const txt = members.get('txt');
  if (!txt) throw new MclipError(`${where('txt')}: missing (expected UTF-8 caption)`);
  let caption: string;
  try {
    caption = new TextDecoder('utf-8', { fatal: true }).decode(txt).trim();
  } catch {
    throw new MclipError(`${where('txt')}: not valid UTF-8`);
  }
  const jb = members.get('json');
  if (!jb) throw new MclipError(`${where('json')}: missing (expected {"captions": [...], "labels": {...}})`);
  let meta: unknown;
  try {
    meta = JSON.parse(new TextDecoder().decode(jb));
  } catch {
    throw new MclipError(`${where('json')}: not valid JSON`);
  }
  if (typeof meta !== 'object' || meta === null || Array.isArray(meta)) throw new MclipError(`${where('json')}: expected an object`);
  const m = meta as Record<string, unknown>;
  const caps = m.captions ?? [];
  if (!Array.isArray(caps) || !caps.every((c) => typeof c === 'string')) throw new MclipError(`${where('json')}: "captions" must be an array of strings`);
  const labels = m.labels;
  if (typeof labels !== 'object' || labels === null || Array.isArray(labels) || !Object.values(labels).every((v) => typeof v === 'string'))
    throw new MclipError(`${where('json')}: "labels" must be an object of strings`);
  if (typeof (labels as Record<string, unknown>).category !== 'string') throw new MclipError(`${where('json')}: "labels.category" missing`);
  const source = typeof m.source === 'object' && m.source !== null && !Array.isArray(m.source) ? (m.source as Record<string, unknown>) : undefined;
  return { key, image, caption, captions: caps as string[], labels: labels as Record<string, string>, source };
}

/**
 * Decoded image–text samples of a dataset folder (`dir/split` when `split` is given, else `dir`
 * itself is the shard folder). Samples with missing members or undecodable content are reported
 * in `summary.problems`, counted in `summary.skipped` and skipped.
 */
export class ImageTextReader implements AsyncIterable<ImageTextSample> {
  private readonly shards: ShardReader;
  constructor(dir: string, split?: string, options: Omit<ReadShardsOptions, 'required'> = {}) {
    this.shards = new ShardReader(split ? join(dir, split) : dir, { ...options, required: [...IMAGE_TEXT_MEMBERS] });
  }
  get summary(): ShardReadSummary {
    return this.shards.summary;
  }
  get files(): string[] {
    return this.shards.files;
  }
  async *[Symbol.asyncIterator](): AsyncIterator<ImageTextSample> {
    for await (const s of this.shards) {
      let d: ImageTextSample;
      try {
        d = decodeSample(s.key, s.members, s.shard);
      } catch (e) {
        if (!(e instanceof MclipError)) throw e;
        this.shards.summary.samples--;
        this.shards.report({ shard: s.shard, key: s.key, reason: e.message }, true);
        continue;
      }
      yield d;
    }
  }
}

export function readImageTextDataset(dir: string, split?: string, options?: Omit<ReadShardsOptions, 'required'>): ImageTextReader {
  return new ImageTextReader(dir, split, options);
}
