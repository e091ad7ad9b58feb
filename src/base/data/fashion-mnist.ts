/**
 * Fashion-MNIST (IDX files, e.g. Debian's `dataset-fashion-mnist` in /usr/share/datasets/fashion-mnist)
 * → image–text shards: 28×28 grayscale → RGB PNG, caption "a photo of a <class>", labels.category = class.
 * `train/` from the train files, `eval/` from the t10k files.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { MclipError } from '../../errors.js';
import { DatasetBuilder, grayToPng, type DatasetManifest } from './build.js';
import { dedupeCaptions } from './sample.js';

export const FASHION_MNIST_DEFAULT_DIR = '/usr/share/datasets/fashion-mnist';
export const FASHION_MNIST_CLASSES = ['t-shirt/top', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker', 'bag', 'ankle boot'] as const;

/** An IDX array: unsigned bytes with their dimensions (`[n, 28, 28]` for images, `[n]` for labels). */
export interface IdxArray {
  dims: number[];
  data: Uint8Array;
}

/** Parses IDX bytes (gzip-compressed or not); only the unsigned-byte type (0x08) is accepted. */
export function parseIdx(bytes: Uint8Array, where = '(idx)'): IdxArray {
  let b = bytes;
  if (b.byteLength >= 2 && b[0] === 0x1f && b[1] === 0x8b) {
    try {
      const g = gunzipSync(b);
      b = new Uint8Array(g.buffer, g.byteOffset, g.byteLength);
    } catch (e) {
      throw new MclipError(`${where}: corrupt gzip data (${e instanceof Error ? e.message : String(e)})`, { cause: e });
    }
  }
  if (b.byteLength < 4 || b[0] !== 0 || b[1] !== 0) throw new MclipError(`${where}: not an IDX file (bad magic number)`);
  if (b[2] !== 0x08) throw new MclipError(`${where}: IDX data type 0x${b[2].toString(16)} not supported (expected 0x08, unsigned byte)`);
  const nd = b[3];
  if (nd < 1 || b.byteLength < 4 + 4 * nd) throw new MclipError(`${where}: truncated IDX header`);
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const dims: number[] = [];
  for (let i = 0; i < nd; i++) dims.push(view.getUint32(4 + 4 * i, false));
  const n = dims.reduce((a, d) => a * d, 1);
  const off = 4 + 4 * nd;
  if (b.byteLength - off !== n) throw new MclipError(`${where}: expected ${n} data bytes for dims [${dims.join(', ')}], found ${b.byteLength - off}`);
  return { dims, data: b.subarray(off) };
}

/** Encodes an unsigned-byte IDX file (for tests and tools). */
export function encodeIdx(dims: readonly number[], data: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + 4 * dims.length + data.byteLength);
  const view = new DataView(out.buffer);
  out[2] = 0x08;
  out[3] = dims.length;
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  out.set(data, 4 + 4 * dims.length);
  return out;
}

function readIdxFile(dir: string, stem: string): IdxArray {
  for (const name of [`${stem}.gz`, stem]) {
    const p = join(dir, name);
    if (existsSync(p)) return parseIdx(readFileSync(p), p);
  }
  throw new MclipError(
    `${join(dir, stem)}[.gz]: Fashion-MNIST IDX file not found (install Debian's dataset-fashion-mnist: apt-get install dataset-fashion-mnist, or pass --idx DIR)`,
  );
}

/** Loads one split's images `[n, h, w]` and labels `[n]`; `prefix` is `train` or `t10k`. */
export function readFashionMnistSplit(dir: string, prefix: 'train' | 't10k'): { images: IdxArray; labels: IdxArray } {
  const images = readIdxFile(dir, `${prefix}-images-idx3-ubyte`);
  const labels = readIdxFile(dir, `${prefix}-labels-idx1-ubyte`);
  const where = join(dir, `${prefix}-*`);
  if (images.dims.length !== 3) throw new MclipError(`${where}: images must be 3-D [n, h, w], got [${images.dims.join(', ')}]`);
  if (labels.dims.length !== 1) throw new MclipError(`${where}: labels must be 1-D [n], got [${labels.dims.join(', ')}]`);
  if (images.dims[0] !== labels.dims[0]) throw new MclipError(`${where}: ${images.dims[0]} images but ${labels.dims[0]} labels`);
  const bad = labels.data.findIndex((l) => l >= FASHION_MNIST_CLASSES.length);
  if (bad >= 0) throw new MclipError(`${where}: label ${labels.data[bad]} at index ${bad} out of range 0..${FASHION_MNIST_CLASSES.length - 1}`);
  return { images, labels };
}

const an = (s: string): string => `${/^[aeiou]/i.test(s) ? 'an' : 'a'} ${s}`;

export function fashionCaption(cls: string): string {
  return `a photo of ${an(cls)}`;
}

export function fashionAltCaptions(cls: string): string[] {
  return dedupeCaptions(
    [cls, `a black and white photo of ${an(cls)}`, `a low resolution photo of ${an(cls)}`, `a grayscale product image of ${an(cls)}`, `a small photo of ${an(cls)}`, `${an(cls)} on a black background`],
    [fashionCaption(cls)],
  );
}

export interface FashionMnistOptions {
  /** IDX folder (default /usr/share/datasets/fashion-mnist) */
  idx?: string;
  samplesPerShard?: number;
  /** keep only the first `limit` images of each split */
  limit?: number;
  force?: boolean;
  onProgress?: (done: number, total: number) => void;
}

export async function buildFashionMnistDataset(out: string, options: FashionMnistOptions = {}): Promise<DatasetManifest> {
  const dir = options.idx ?? FASHION_MNIST_DEFAULT_DIR;
  if (!existsSync(dir)) throw new MclipError(`${dir}: Fashion-MNIST folder not found (apt-get install dataset-fashion-mnist, or pass --idx DIR)`);
  const splits = { train: readFashionMnistSplit(dir, 'train'), eval: readFashionMnistSplit(dir, 't10k') };
  const [h, w] = [splits.train.images.dims[1], splits.train.images.dims[2]];
  if (splits.eval.images.dims[1] !== h || splits.eval.images.dims[2] !== w) throw new MclipError(`${dir}: train images are ${h}×${w} but t10k images are ${splits.eval.images.dims[1]}×${splits.eval.images.dims[2]}`);
  const count = (n: number): number => (options.limit === undefined ? n : Math.min(n, options.limit));
  const total = count(splits.train.labels.dims[0]) + count(splits.eval.labels.dims[0]);
  const builder = new DatasetBuilder(out, { splits: ['train', 'eval'], samplesPerShard: options.samplesPerShard, force: options.force });
  let done = 0;
  try {
    for (const [split, { images, labels }] of Object.entries(splits)) {
      const n = count(labels.dims[0]);
      const batch = 64;
      for (let i = 0; i < n; i += batch) {
        const idx = Array.from({ length: Math.min(batch, n - i) }, (_, j) => i + j);
        const pngs = await Promise.all(idx.map((k) => grayToPng(images.data.subarray(k * h * w, (k + 1) * h * w), w, h)));
        for (let j = 0; j < idx.length; j++) {
          const k = idx[j];
          const label = labels.data[k];
          const cls = FASHION_MNIST_CLASSES[label];
          await builder.add(
            split,
            `fmnist-${split}-${String(k).padStart(6, '0')}`,
            { image: pngs[j], caption: fashionCaption(cls), captions: fashionAltCaptions(cls), labels: { category: cls, label: String(label) }, source: { dataset: 'fashion-mnist', file: split === 'train' ? 'train' : 't10k', index: k } },
          );
        }
        done += idx.length;
        options.onProgress?.(done, total);
      }
    }
    return await builder.close({ name: 'fashion-mnist', image: { width: w, height: h }, source: { idx: dir, classes: [...FASHION_MNIST_CLASSES], limit: options.limit ?? null } });
  } catch (e) {
    builder.abort();
    throw e;
  }
}
