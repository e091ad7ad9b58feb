/**
 * Building image–text datasets (sample.ts convention): one ShardWriter per split under
 * `out/<split>/`, per-split/per-group counts, and `out/manifest.json` written atomically at the end.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import sharp from 'sharp';
import { MclipError } from '../../errors.js';
import { encodeSample, IMAGE_TEXT_MEMBERS, type ImageTextContent } from './sample.js';
import { ShardWriter } from './shards.js';

export const MANIFEST_FORMAT = 'mclip-image-text-v1';

export interface SplitStats {
  /** shard folder, relative to the dataset folder */
  dir: string;
  samples: number;
  shards: number;
  bytes: number;
  /** samples per group (e.g. per vendor) */
  groups: Record<string, number>;
  /** samples per labels.category */
  categories: Record<string, number>;
}

export interface DatasetManifest {
  format: typeof MANIFEST_FORMAT;
  name: string;
  /** ISO time the build finished */
  built: string;
  buildSeconds: number;
  members: string[];
  image: { width: number; height: number; channels: 3; format: 'png' };
  splits: Record<string, SplitStats>;
  /** sorted list of labels.category values over all splits */
  categories: string[];
  totalSamples: number;
  totalBytes: number;
  source: Record<string, unknown>;
}

export interface DatasetBuilderOptions {
  splits: readonly string[];
  samplesPerShard?: number;
  /** replace shards already in the split folders (default: refuse) */
  force?: boolean;
}

/** Writes samples into `out/<split>/shard-*.tar` and a manifest. */
export class DatasetBuilder {
  readonly out: string;
  private readonly writers = new Map<string, ShardWriter>();
  private readonly stats = new Map<string, SplitStats>();
  private readonly t0 = Date.now();

  constructor(out: string, options: DatasetBuilderOptions) {
    this.out = resolve(out);
    for (const split of options.splits) {
      const dir = join(this.out, split);
      if (existsSync(dir)) {
        const old = readdirSync(dir).filter((f) => f.endsWith('.tar') || f.includes('.tar.tmp-'));
        if (old.length > 0 && !options.force) throw new MclipError(`${dir}: already holds ${old.length} shard(s); pass --force to replace them`);
        for (const f of old) rmSync(join(dir, f), { force: true });
      }
      mkdirSync(dir, { recursive: true });
      this.writers.set(split, new ShardWriter(dir, { samplesPerShard: options.samplesPerShard }));
      this.stats.set(split, { dir: split, samples: 0, shards: 0, bytes: 0, groups: {}, categories: {} });
    }
  }

  /** Adds one sample to `split`; `group` (e.g. the vendor) is counted in the manifest. */
  async add(split: string, key: string, content: ImageTextContent, group?: string): Promise<void> {
    const w = this.writers.get(split);
    const st = this.stats.get(split);
    if (!w || !st) throw new MclipError(`unknown split "${split}" (expected one of ${[...this.writers.keys()].join(', ')})`);
    await w.write(key, encodeSample(content));
    st.samples++;
    if (group !== undefined) st.groups[group] = (st.groups[group] ?? 0) + 1;
    const c = content.labels.category;
    st.categories[c] = (st.categories[c] ?? 0) + 1;
  }

  /** Finishes all shards and writes `manifest.json`. */
  async close(info: { name: string; image: { width: number; height: number }; source?: Record<string, unknown> }): Promise<DatasetManifest> {
    for (const [split, w] of this.writers) {
      const r = await w.close();
      const st = this.stats.get(split)!;
      st.shards = r.shards.length;
      st.bytes = r.bytes;
    }
    const splits = Object.fromEntries(this.stats);
    const cats = new Set<string>();
    for (const st of this.stats.values()) for (const c of Object.keys(st.categories)) cats.add(c);
    const manifest: DatasetManifest = {
      format: MANIFEST_FORMAT,
      name: info.name,
      built: new Date().toISOString(),
      buildSeconds: Math.round((Date.now() - this.t0) / 100) / 10,
      members: [...IMAGE_TEXT_MEMBERS],
      image: { width: info.image.width, height: info.image.height, channels: 3, format: 'png' },
      splits,
      categories: [...cats].sort(),
      totalSamples: [...this.stats.values()].reduce((a, s) => a + s.samples, 0),
      totalBytes: [...this.stats.values()].reduce((a, s) => a + s.bytes, 0),
      source: info.source ?? {},
    };
    atomicWriteJson(join(this.out, 'manifest.json'), manifest);
    return manifest;
  }

  /** Drops unfinished shards (after an error). */
  abort(): void {
    for (const w of this.writers.values()) w.abort();
  }
}

export function atomicWriteJson(path: string, value: unknown): void {
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  try {
    writeFileSync(tmp, JSON.stringify(value, null, 1) + '\n', 'utf8');
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new MclipError(`cannot write ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { cause: e });
  }
}

/** An RGB colour, 0–255 each. */
export type Rgb = readonly [number, number, number];

/** Parses `255,255,255` (or `#ffffff`) into an RGB triple; MclipError naming `what` otherwise. */
export function parseRgb(text: string, what = '--background'): Rgb {
  const t = text.trim();
  const hex = /^#?([0-9a-f]{6})$/i.exec(t);
  if (hex) {
    const n = parseInt(hex[1], 16);
    return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
  }
  const parts = t.split(',').map((p) => p.trim());
  const v = parts.map(Number);
  if (parts.length !== 3 || !v.every((x, i) => parts[i] !== '' && Number.isInteger(x) && x >= 0 && x <= 255))
    throw new MclipError(`${what}: expected R,G,B with integers 0–255 (e.g. 255,255,255), got "${text}"`);
  return [v[0], v[1], v[2]];
}

/** Encodes raw RGB pixels (HWC, 3 channels) as a PNG. */
export async function rgbToPng(rgb: Uint8Array, width: number, height: number): Promise<Uint8Array> {
  if (rgb.byteLength !== width * height * 3) throw new MclipError(`rgbToPng: expected ${width * height * 3} bytes, got ${rgb.byteLength}`);
  const buf = await sharp(Buffer.from(rgb.buffer, rgb.byteOffset, rgb.byteLength), { raw: { width, height, channels: 3 } })
    .png({ compressionLevel: 9 })
    .toBuffer();
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

/** Grayscale pixels (one byte each) → RGB PNG (the value repeated in R, G and B). */
export async function grayToPng(gray: Uint8Array, width: number, height: number): Promise<Uint8Array> {
  const rgb = new Uint8Array(gray.length * 3);
  for (let i = 0; i < gray.length; i++) rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = gray[i];
  return rgbToPng(rgb, width, height);
}

/** Any image file/bytes → `size`×`size` RGB PNG, transparency composited on `background`. */
export async function compositeToRgbPng(input: string | Uint8Array, size: number, background: Rgb): Promise<Uint8Array> {
  const src = typeof input === 'string' ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  const { data, info } = await sharp(src)
    .resize(size, size, { fit: 'contain', background: { r: background[0], g: background[1], b: background[2], alpha: 0 } })
    .flatten({ background: { r: background[0], g: background[1], b: background[2] } })
    .toColourspace('srgb')
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3 || info.width !== size || info.height !== size) throw new MclipError(`image ${typeof input === 'string' ? input : '(bytes)'}: could not convert to ${size}×${size} RGB`);
  return rgbToPng(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), size, size);
}

/** Decodes a PNG to raw pixels (for tests and checks). */
export async function decodePng(png: Uint8Array): Promise<{ data: Uint8Array; width: number; height: number; channels: number }> {
  const { data, info } = await sharp(Buffer.from(png.buffer, png.byteOffset, png.byteLength)).raw().toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height, channels: info.channels };
}

/** The sample count of `split` from `dir/manifest.json`, or undefined when there is no readable manifest or no such split. */
export function manifestSampleCount(dir: string, split: string): number | undefined {
  const path = join(dir, 'manifest.json');
  if (!existsSync(path)) return undefined;
  try {
    const m = JSON.parse(readFileSync(path, 'utf8')) as Partial<DatasetManifest>;
    const n = m.splits?.[split]?.samples;
    return typeof n === 'number' && n >= 0 ? n : undefined;
  } catch {
    return undefined;
  }
}
