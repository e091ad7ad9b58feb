/**
 * The ONNX export cache of the gradient-free passes: a checkpoint's image and text towers exported
 * once, verified once against the tfjs model (onnxruntime-node, max|Δ|/max|ref| ≤ 1e-4 on random
 * inputs) and reused afterwards.
 *
 * Layout: `<cache>/onnx/<arch>-<key>/{image.onnx, text.onnx, entry.json}` with `<cache>` mclip's
 * cache folder (`cacheDir`: $MCLIP_CACHE_DIR, else $XDG_CACHE_HOME/mclip, else ~/.cache/mclip).
 * The key is the sha256 of the checkpoint file's bytes, the model config and the export options
 * (opset, image size, tokens dtype, the text padding policy when not `as-trained`, cache format). An entry is built in a temporary folder and
 * renamed into place, so a folder under its final name is complete.
 */
import { closeSync, existsSync, mkdirSync, openSync, readSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { cacheDir } from '../base/backend/native-notice.js';
import type { CLIP } from '../base/model/clip.js';
import { MclipError } from '../errors.js';
import { exportOnnx, resolveOptions, type ExportTextPadding, type VerifyReport } from '../export/index.js';

/** Bumped when the layout or the meaning of an entry changes. */
export const ONNX_CACHE_FORMAT = 1;
/** The verification bound of a new entry (max|Δ| / max|ref| per output). */
export const ONNX_CACHE_TOLERANCE = 1e-4;

/** The cache folder cannot be written (as opposed to a model that cannot be exported). */
export class OnnxCacheError extends MclipError {}

/** `<cache>/onnx`. */
export function onnxCacheRoot(): string {
  return join(cacheDir(), 'onnx');
}

/** sha256 (hex) of a file's bytes, read in chunks. */
export function fileSha256(path: string): string {
  const h = createHash('sha256');
  const buf = Buffer.allocUnsafe(4 << 20);
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new MclipError(`${path}: cannot read the checkpoint (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  try {
    for (;;) {
      const k = readSync(fd, buf, 0, buf.length, null);
      if (k === 0) break;
      h.update(buf.subarray(0, k));
    }
  } finally {
    closeSync(fd);
  }
  return h.digest('hex');
}

export interface OnnxCacheOptions {
  /** Cache folder holding the entries (default `onnxCacheRoot()`). */
  root?: string;
  /** ONNX opset (default 17). */
  opset?: number;
  /** Element type of the `tokens` input (default int64). */
  tokensDtype?: 'int64' | 'int32';
  /** Padding policy of the text tower's graph (default `as-trained`; `truncate`: tokens [batch, seq ≤ S]). */
  textPadding?: ExportTextPadding;
}

export interface OnnxCacheEntry {
  /** The entry's folder. */
  dir: string;
  /** Its name: `<arch>-<first 24 hex digits of the key>`. */
  name: string;
  /** The full key (sha256 hex). */
  key: string;
  /** The image tower: `image` float32 [batch, 3, H, W] → `image_features`. */
  image: string;
  /** The text tower: `tokens` [batch, S] → `text_features`. */
  text: string;
  /** True when the entry was already there (nothing exported). */
  hit: boolean;
  /** The verification of a new entry (absent on a hit). */
  verify?: { image: VerifyReport; text: VerifyReport };
}

/** The key material of a model loaded from a checkpoint with these bytes. */
export function onnxCacheKey(checkpointSha256: string, model: CLIP, opts: OnnxCacheOptions = {}): { key: string; name: string; material: Record<string, unknown> } {
  const o = resolveOptions(model, { tower: 'both', opset: opts.opset, tokensDtype: opts.tokensDtype, textPadding: opts.textPadding });
  // The policy enters the key only when not as-trained, so the keys of the as-trained entries stay as they were.
  const padding = o.textPadding === 'as-trained' ? {} : { textPadding: o.textPadding };
  const material = { format: ONNX_CACHE_FORMAT, checkpoint: checkpointSha256, config: model.cfg, opset: o.opset, imageSize: o.imageSize, tokensDtype: o.tokensDtype, ...padding, tolerance: ONNX_CACHE_TOLERANCE };
  const key = createHash('sha256').update(JSON.stringify(material)).digest('hex');
  const arch = model.cfg.name.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 64) || 'model';
  return { key, name: `${arch}-${key.slice(0, 24)}`, material };
}

function complete(dir: string): boolean {
  return ['image.onnx', 'text.onnx', 'entry.json'].every((f) => existsSync(join(dir, f)));
}

/** Number of entries this process has exported (tests read it: a hit exports nothing). */
let exportsMade = 0;
export function onnxCacheExports(): number {
  return exportsMade;
}

/**
 * The cached export of `model` (loaded from `checkpoint`; fused in place first): reused when its
 * entry exists, else exported, verified (≤ 1e-4) and written atomically. Throws an MclipError
 * when the model cannot be exported or verified, or the cache cannot be written.
 */
export async function cachedOnnx(model: CLIP, checkpoint: string, opts: OnnxCacheOptions = {}): Promise<OnnxCacheEntry> {
  const root = opts.root ?? onnxCacheRoot();
  const sha = fileSha256(checkpoint);
  const { key, name, material } = onnxCacheKey(sha, model, opts);
  const dir = join(root, name);
  const entry = (hit: boolean, verify?: OnnxCacheEntry['verify']): OnnxCacheEntry => ({ dir, name, key, image: join(dir, 'image.onnx'), text: join(dir, 'text.onnx'), hit, ...(verify ? { verify } : {}) });
  if (complete(dir)) return entry(true);
  const tmp = join(root, `.${name}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    mkdirSync(tmp, { recursive: true });
  } catch (e) {
    throw new OnnxCacheError(`cannot write the ONNX cache ${root} (${(e as NodeJS.ErrnoException).code ?? String(e)}; set $MCLIP_CACHE_DIR to a writable folder)`);
  }
  try {
    const common = { opset: opts.opset, tokensDtype: opts.tokensDtype, tolerance: ONNX_CACHE_TOLERANCE, verify: true };
    const image = await exportOnnx(model, join(tmp, 'image.onnx'), { ...common, tower: 'image' });
    const text = await exportOnnx(model, join(tmp, 'text.onnx'), { ...common, tower: 'text', textPadding: opts.textPadding });
    if (!image.verify || !text.verify) throw new MclipError('ONNX export: verification did not run');
    const verify = { image: image.verify, text: text.verify };
    writeFileSync(join(tmp, 'entry.json'), JSON.stringify({ ...material, checkpointPath: checkpoint, createdAt: new Date().toISOString(), verify }, null, 2) + '\n');
    exportsMade++;
    if (existsSync(dir) && !complete(dir)) rmSync(dir, { recursive: true, force: true }); // a damaged entry
    try {
      renameSync(tmp, dir);
    } catch (e) {
      if (complete(dir)) return entry(true); // another process finished the same entry first
      throw new OnnxCacheError(`cannot write the ONNX cache entry ${dir} (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
    }
    return entry(false, verify);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** Removes an entry (e.g. one onnxruntime cannot load), so the next `cachedOnnx` rebuilds it. */
export function dropOnnxEntry(e: Pick<OnnxCacheEntry, 'dir'>): void {
  rmSync(e.dir, { recursive: true, force: true });
}
