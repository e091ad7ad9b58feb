/**
 * A small read-only zip reader for PyTorch checkpoints: parses the central directory (zip64 included) and reads
 * single entries on demand from a file handle or an in-memory buffer, so a large checkpoint is never loaded
 * twice. Entries may be stored (method 0, what torch writes) or deflated (method 8, via fflate).
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { inflateSync } from 'fflate';
import { MclipError } from '../../errors.js';

/** Random access to bytes (a file or a buffer). */
export interface ByteSource {
  readonly size: number;
  /** Reads exactly `length` bytes at `offset` into `target` (or a new buffer) and returns them. */
  read(offset: number, length: number, target?: Uint8Array): Promise<Uint8Array>;
  close(): Promise<void>;
}

export function bufferSource(bytes: Uint8Array): ByteSource {
  return {
    size: bytes.byteLength,
    async read(offset, length, target) {
      if (offset < 0 || offset + length > bytes.byteLength) throw new RangeError('read beyond end of buffer');
      const view = bytes.subarray(offset, offset + length);
      if (!target) return view;
      target.set(view);
      return target;
    },
    async close() {},
  };
}

/**
 * A file opened for random access. Reads are synchronous (a checkpoint is hundreds of small reads, for which
 * the thread-pool round trip of async reads costs more than the reads themselves).
 */
export async function fileSource(path: string): Promise<ByteSource> {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new MclipError(`${path}: cannot open file (${code ?? String(e)})`, { cause: e });
  }
  const { size } = fstatSync(fd);
  return {
    size,
    async read(offset, length, target) {
      const buf = target ?? new Uint8Array(length);
      let done = 0;
      while (done < length) {
        const bytesRead = readSync(fd, buf, done, length - done, offset + done);
        if (bytesRead === 0) throw new RangeError('unexpected end of file');
        done += bytesRead;
      }
      return buf;
    },
    async close() {
      closeSync(fd);
    },
  };
}

export interface ZipEntry {
  name: string;
  /** 0 = stored, 8 = deflated. */
  method: number;
  compressedSize: number;
  size: number;
  crc32: number;
  localHeaderOffset: number;
}

const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_LOCAL = 0x04034b50;

function u64(dv: DataView, off: number): number {
  const v = dv.getBigUint64(off, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError('64-bit zip field too large');
  return Number(v);
}

/** A zip archive's central directory plus entry reading. `name` is used in error messages. */
export class ZipArchive {
  private constructor(
    readonly name: string,
    private readonly source: ByteSource,
    readonly entries: Map<string, ZipEntry>,
  ) {}

  /** Parses the central directory; a missing/garbled one is an MclipError mentioning truncation. */
  static async open(source: ByteSource, name: string): Promise<ZipArchive> {
    const bad = (why: string) =>
      new MclipError(`${name}: not a valid PyTorch checkpoint (zip central directory ${why}: truncated?)`);
    const size = source.size;
    const tailLen = Math.min(size, 22 + 65535 + 20);
    if (size < 22) throw bad('not found');
    const tail = await source.read(size - tailLen, tailLen, new Uint8Array(tailLen));
    const tdv = new DataView(tail.buffer, tail.byteOffset, tail.byteLength);
    // The end-of-central-directory record is the last thing in the file, followed only by a comment.
    let eocd = -1;
    for (let i = tailLen - 22; i >= 0; i--) {
      if (tdv.getUint32(i, true) === SIG_EOCD && i + 22 + tdv.getUint16(i + 20, true) === tailLen) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) throw bad('not found');
    let count = tdv.getUint16(eocd + 10, true);
    let cdSize = tdv.getUint32(eocd + 12, true);
    let cdOffset = tdv.getUint32(eocd + 16, true);
    if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
      const loc = eocd - 20;
      if (loc < 0 || tdv.getUint32(loc, true) !== SIG_ZIP64_LOCATOR) throw bad('(zip64 locator) not found');
      const z64Offset = u64(tdv, loc + 8);
      if (z64Offset + 56 > size) throw bad('(zip64 record) out of range');
      const rec = await source.read(z64Offset, 56, new Uint8Array(56));
      const rdv = new DataView(rec.buffer);
      if (rdv.getUint32(0, true) !== SIG_ZIP64_EOCD) throw bad('(zip64 record) not found');
      count = u64(rdv, 32);
      cdSize = u64(rdv, 40);
      cdOffset = u64(rdv, 48);
    }
    const eocdAbs = size - tailLen + eocd;
    if (cdOffset + cdSize > eocdAbs || count * 46 > cdSize) throw bad('out of range');
    const cd = await source.read(cdOffset, cdSize, new Uint8Array(cdSize));
    const dv = new DataView(cd.buffer);
    const entries = new Map<string, ZipEntry>();
    const utf8 = new TextDecoder('utf-8', { fatal: false });
    let p = 0;
    for (let i = 0; i < count; i++) {
      if (p + 46 > cdSize || dv.getUint32(p, true) !== SIG_CENTRAL) throw bad(`entry ${i} is garbled`);
      const method = dv.getUint16(p + 10, true);
      const crc32 = dv.getUint32(p + 16, true);
      let compressedSize = dv.getUint32(p + 20, true);
      let usize = dv.getUint32(p + 24, true);
      const nameLen = dv.getUint16(p + 28, true);
      const extraLen = dv.getUint16(p + 30, true);
      const commentLen = dv.getUint16(p + 32, true);
      let localHeaderOffset = dv.getUint32(p + 42, true);
      if (p + 46 + nameLen + extraLen + commentLen > cdSize) throw bad(`entry ${i} is garbled`);
      const entryName = utf8.decode(cd.subarray(p + 46, p + 46 + nameLen));
      // zip64 extended information extra field
      let e = p + 46 + nameLen;
      const eEnd = e + extraLen;
      while (e + 4 <= eEnd) {
        const id = dv.getUint16(e, true);
        const len = dv.getUint16(e + 2, true);
        if (id === 0x0001) {
          let q = e + 4;
          const take = () => {
            if (q + 8 > e + 4 + len) throw bad(`entry '${entryName}' has a short zip64 field`);
            const v = u64(dv, q);
            q += 8;
            return v;
          };
          if (usize === 0xffffffff) usize = take();
          if (compressedSize === 0xffffffff) compressedSize = take();
          if (localHeaderOffset === 0xffffffff) localHeaderOffset = take();
        }
        e += 4 + len;
      }
      if (localHeaderOffset + 30 + compressedSize > cdOffset) throw bad(`entry '${entryName}' is out of range`);
      entries.set(entryName, { name: entryName, method, compressedSize, size: usize, crc32, localHeaderOffset });
      p += 46 + nameLen + extraLen + commentLen;
    }
    return new ZipArchive(name, source, entries);
  }

  /** Absolute offset of an entry's data (after its local header, whose extra field may differ from the central one). */
  private async dataOffset(entry: ZipEntry): Promise<number> {
    const h = await this.source.read(entry.localHeaderOffset, 30, new Uint8Array(30));
    const dv = new DataView(h.buffer);
    if (dv.getUint32(0, true) !== SIG_LOCAL) {
      throw new MclipError(`${this.name}: zip entry '${entry.name}' has no local header (corrupted file?)`);
    }
    const off = entry.localHeaderOffset + 30 + dv.getUint16(26, true) + dv.getUint16(28, true);
    if (off + entry.compressedSize > this.source.size) {
      throw new MclipError(`${this.name}: zip entry '${entry.name}' extends beyond the end of the file (truncated?)`);
    }
    return off;
  }

  /**
   * Reads and decompresses an entry. `target`, when given, must have exactly `entry.size` bytes and receives the
   * data (so callers can read straight into an aligned buffer). With `verify`, checks the CRC-32.
   */
  async read(entry: ZipEntry, opts: { target?: Uint8Array; verify?: boolean } = {}): Promise<Uint8Array> {
    const off = await this.dataOffset(entry);
    let out: Uint8Array;
    if (entry.method === 0) {
      if (entry.compressedSize !== entry.size) {
        throw new MclipError(
          `${this.name}: zip entry '${entry.name}' is stored with size ${entry.compressedSize} != ${entry.size}`,
        );
      }
      out = await this.source.read(off, entry.size, opts.target ?? new Uint8Array(entry.size));
    } else if (entry.method === 8) {
      const raw = await this.source.read(off, entry.compressedSize);
      const target = opts.target ?? new Uint8Array(entry.size);
      try {
        out = inflateSync(raw, { out: target });
      } catch (e) {
        throw new MclipError(`${this.name}: zip entry '${entry.name}' cannot be inflated (corrupted file?)`, {
          cause: e,
        });
      }
      if (out.byteLength !== entry.size) {
        throw new MclipError(
          `${this.name}: zip entry '${entry.name}' inflates to ${out.byteLength} bytes, expected ${entry.size}`,
        );
      }
    } else {
      throw new MclipError(
        `${this.name}: zip entry '${entry.name}' uses compression method ${entry.method} (only stored/deflate are supported)`,
      );
    }
    if (opts.verify) {
      const got = crc32(out);
      if (got !== entry.crc32) {
        throw new MclipError(
          `${this.name}: zip entry '${entry.name}' is corrupted (CRC-32 expected ${hex8(entry.crc32)}, got ${hex8(got)})`,
        );
      }
    }
    return out;
  }

  close(): Promise<void> {
    return this.source.close();
  }
}

function hex8(n: number): string {
  return n.toString(16).padStart(8, '0');
}

let CRC_TABLE: Int32Array | undefined;

/** CRC-32 (IEEE, as in zip). */
export function crc32(bytes: Uint8Array): number {
  if (!CRC_TABLE) {
    CRC_TABLE = new Int32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      CRC_TABLE[n] = c;
    }
  }
  const t = CRC_TABLE;
  let c = -1;
  for (let i = 0; i < bytes.length; i++) c = t[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}
