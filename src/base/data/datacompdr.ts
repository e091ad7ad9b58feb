/**
 * DataCompDR samples (methods.md §2.3) in webdataset shards.
 *
 * | member        | content |
 * |---------------|---------|
 * | `url.txt`     | image URL (UTF-8) — optional on read |
 * | `json`        | `{"uid": 32-hex, "sha256": …}` (other keys are kept in `meta`) |
 * | `syn.json`    | `{"syn_text": [strings]}` (5 in DataCompDR) |
 * | `paug.json`   | `{"param_aug": [records]}`; the value may also be a JSON STRING of that list (HF viewer/parquet) — both are accepted, we write the list |
 * | `npz`         | `image_emb` float32 [n_aug, K·D] (one row per `param_aug` record) and `text_emb` float32 [1 + n_syn, K·D] (row 0 = GT caption, rows 1.. = `syn_text` in order); float16 is accepted on read and converted |
 * | `png` / `jpg` | the image, ours / after joining with DataComp-12M — optional |
 * | `txt`         | the original (ground-truth) caption — optional |
 * | `teachers.json` | ours, optional: `{"teachers": [{"name": string, "dim": D_k, "logit_scale": number}, …]}` — the teachers whose normalised embeddings are concatenated (in order) in every row; the dims must sum to K·D |
 *
 * Without `teachers.json` a 1536-wide embedding is taken to be DataCompDR's two ViT-L-14 teachers
 * (`openai`, `datacomp_xl_s13b_b90k`; 768 each; logit scale 100); any other width is one teacher.
 *
 * Validation on decode: shapes consistent with n_aug and n_syn, every record well-formed, and every
 * teacher slice of every row of both embeddings L2-normalised (|‖x‖ − 1| ≤ `normTolerance`).
 * Violations throw an MclipError naming the shard, key, member and what was expected.
 *
 * Not handled yet: `pth.gz` (bf16 release) and the DFNDR/v2 per-source `<syn_key>_emb` layout.
 */
import { MclipError } from '../../errors.js';
import { parseAugParams, type AugParams } from './augment.js';
import { readNpz, toFloat32, writeNpz, type NpyArray } from './npz.js';
import { ShardReader, type ReadShardsOptions, type ShardReadSummary } from './shards.js';

export interface TeacherInfo {
  name: string;
  dim: number;
  /** teacher inverse temperature 1/τ used for distillation */
  logitScale: number;
}

/** DataCompDR's teachers (HF config.json), in concatenation order. */
export const DATACOMPDR_TEACHERS: readonly TeacherInfo[] = [
  { name: 'ViT-L-14/openai', dim: 768, logitScale: 100 },
  { name: 'ViT-L-14/datacomp_xl_s13b_b90k', dim: 768, logitScale: 100 },
];

export interface DrSample {
  key: string;
  url?: string;
  uid?: string;
  sha256?: string;
  /** other keys of the `json` member */
  meta?: Record<string, unknown>;
  synText: string[];
  /** one record per stored augmentation (n_aug) */
  paramAug: AugParams[];
  /** [n_aug, embDim] row-major */
  imageEmb: Float32Array;
  /** [1 + n_syn, embDim] row-major; row 0 = GT caption */
  textEmb: Float32Array;
  /** K·D */
  embDim: number;
  /** present when `teachers.json` is (on decode) or when set (on encode) */
  teachers?: TeacherInfo[];
  image?: { format: 'png' | 'jpg'; bytes: Uint8Array };
  caption?: string;
}

export interface DrDecodeOptions {
  /** shard name for messages */
  shard?: string;
  /** tolerance on per-teacher row norms (default 0.02, enough for bf16-rounded embeddings); `false` disables the check */
  normTolerance?: number | false;
}

const enc = new TextEncoder();

/** The teacher slices of an embedding of width `dim`. */
export function teachersFor(dim: number, teachers?: readonly TeacherInfo[]): readonly TeacherInfo[] {
  if (teachers && teachers.length > 0) return teachers;
  if (dim === 1536) return DATACOMPDR_TEACHERS;
  return [{ name: 'teacher', dim, logitScale: 100 }];
}

function checkNorms(emb: Float32Array, rows: number, dim: number, teachers: readonly TeacherInfo[], tol: number, where: string): void {
  for (let r = 0; r < rows; r++) {
    let off = 0;
    for (const t of teachers) {
      let s = 0;
      for (let k = 0; k < t.dim; k++) {
        const v = emb[r * dim + off + k];
        s += v * v;
      }
      const n = Math.sqrt(s);
      if (!(Math.abs(n - 1) <= tol))
        throw new MclipError(`${where}: row ${r} teacher "${t.name}" slice [${off}:${off + t.dim}) has L2 norm ${n.toFixed(4)} (expected 1 ± ${tol}: each teacher half must be normalised)`);
      off += t.dim;
    }
  }
}

/** Shape/normalisation checks shared by encode and decode. */
function validate(s: Omit<DrSample, 'key'>, where: (m: string) => string, tol: number | false): void {
  const D = s.embDim;
  if (!Number.isInteger(D) || D <= 0) throw new MclipError(`${where('npz')}: embedding width must be a positive integer, got ${D}`);
  const nAug = s.paramAug.length;
  if (s.imageEmb.length !== nAug * D)
    throw new MclipError(`${where('npz')}: image_emb has ${s.imageEmb.length / D} rows of ${D}, expected n_aug = ${nAug} (one per param_aug record)`);
  const nText = 1 + s.synText.length;
  if (s.textEmb.length !== nText * D)
    throw new MclipError(`${where('npz')}: text_emb has ${s.textEmb.length / D} rows of ${D}, expected 1 + n_syn = ${nText} (GT caption + ${s.synText.length} syn_text)`);
  const teachers = teachersFor(D, s.teachers);
  const sum = teachers.reduce((a, t) => a + t.dim, 0);
  if (sum !== D) throw new MclipError(`${where('teachers.json')}: teacher dims ${teachers.map((t) => t.dim).join('+')} = ${sum}, expected the embedding width ${D}`);
  if (tol !== false) {
    checkNorms(s.imageEmb, nAug, D, teachers, tol, `${where('npz')} image_emb`);
    checkNorms(s.textEmb, nText, D, teachers, tol, `${where('npz')} text_emb`);
  }
}

/** Encodes a sample into its tar members (validated; norms checked with the default tolerance). */
export function encodeDrSample(s: DrSample): Map<string, Uint8Array> {
  const where = (m: string): string => `encodeDrSample: sample "${s.key}" member "${m}"`;
  s.paramAug.forEach((a, i) => parseAugParams(a, `${where('paug.json')} record ${i}`));
  validate(s, where, 0.02);
  const out = new Map<string, Uint8Array>();
  if (s.url !== undefined) out.set('url.txt', enc.encode(s.url));
  const meta: Record<string, unknown> = { ...(s.meta ?? {}) };
  if (s.uid !== undefined) meta.uid = s.uid;
  if (s.sha256 !== undefined) meta.sha256 = s.sha256;
  out.set('json', enc.encode(JSON.stringify(meta)));
  out.set('syn.json', enc.encode(JSON.stringify({ syn_text: s.synText })));
  out.set('paug.json', enc.encode(JSON.stringify({ param_aug: s.paramAug })));
  const D = s.embDim;
  const arrays: Record<string, NpyArray> = {
    image_emb: { dtype: 'float32', shape: [s.paramAug.length, D], data: s.imageEmb },
    text_emb: { dtype: 'float32', shape: [1 + s.synText.length, D], data: s.textEmb },
  };
  out.set('npz', writeNpz(arrays, { where: where('npz') }));
  if (s.teachers) out.set('teachers.json', enc.encode(JSON.stringify({ teachers: s.teachers.map((t) => ({ name: t.name, dim: t.dim, logit_scale: t.logitScale })) })));
  if (s.image) out.set(s.image.format, s.image.bytes);
  if (s.caption !== undefined) out.set('txt', enc.encode(s.caption));
  return out;
}

function utf8(b: Uint8Array, where: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(b);
  } catch {
    throw new MclipError(`${where}: not valid UTF-8`);
  }
}

function jsonObject(b: Uint8Array, where: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(utf8(b, where));
  } catch (e) {
    if (e instanceof MclipError) throw e;
    throw new MclipError(`${where}: not valid JSON`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new MclipError(`${where}: expected a JSON object`);
  return v as Record<string, unknown>;
}

function embedding(arrays: Map<string, NpyArray>, name: string, where: string): { data: Float32Array; rows: number; dim: number } {
  const a = arrays.get(name);
  if (!a) throw new MclipError(`${where}: no "${name}" array (has: ${[...arrays.keys()].join(', ') || 'nothing'})`);
  if (a.shape.length !== 2) throw new MclipError(`${where}: "${name}" has shape [${a.shape.join(', ')}], expected 2-D [rows, K·D]`);
  if (a.dtype !== 'float32' && a.dtype !== 'float16') throw new MclipError(`${where}: "${name}" is ${a.dtype}, expected float32 (or float16)`);
  return { data: toFloat32(a), rows: a.shape[0], dim: a.shape[1] };
}

/** Decodes and validates a sample's members; throws MclipError naming shard/key/member on bad content. */
export function decodeDrSample(key: string, members: ReadonlyMap<string, Uint8Array>, options: DrDecodeOptions = {}): DrSample {
  const shard = options.shard ?? '(sample)';
  const where = (m: string): string => `${shard}: sample "${key}" member "${m}"`;
  const need = (m: string, what: string): Uint8Array => {
    const b = members.get(m);
    if (!b) throw new MclipError(`${where(m)}: missing (expected ${what})`);
    return b;
  };
  const s: DrSample = { key, synText: [], paramAug: [], imageEmb: new Float32Array(0), textEmb: new Float32Array(0), embDim: 0 };

  const url = members.get('url.txt');
  if (url) s.url = utf8(url, where('url.txt')).trim();

  const meta = jsonObject(need('json', '{"uid": …, "sha256": …}'), where('json'));
  const { uid, sha256, ...rest } = meta;
  if (uid !== undefined) {
    if (typeof uid !== 'string') throw new MclipError(`${where('json')}: "uid" must be a string`);
    s.uid = uid;
  }
  if (sha256 !== undefined) {
    if (typeof sha256 !== 'string') throw new MclipError(`${where('json')}: "sha256" must be a string`);
    s.sha256 = sha256;
  }
  if (Object.keys(rest).length > 0) s.meta = rest;

  const syn = jsonObject(need('syn.json', '{"syn_text": [strings]}'), where('syn.json')).syn_text;
  if (!Array.isArray(syn) || !syn.every((t) => typeof t === 'string')) throw new MclipError(`${where('syn.json')}: "syn_text" must be an array of strings`);
  s.synText = syn as string[];

  let paug = jsonObject(need('paug.json', '{"param_aug": [records]}'), where('paug.json')).param_aug;
  if (typeof paug === 'string') {
    try {
      paug = JSON.parse(paug);
    } catch {
      throw new MclipError(`${where('paug.json')}: "param_aug" is a string but not valid JSON (expected a list of records or its JSON text)`);
    }
  }
  if (!Array.isArray(paug)) throw new MclipError(`${where('paug.json')}: "param_aug" must be a list of augmentation records (or a JSON string of one)`);
  s.paramAug = paug.map((r, i) => parseAugParams(r, `${where('paug.json')} record ${i}`));

  const tj = members.get('teachers.json');
  if (tj) {
    const list = jsonObject(tj, where('teachers.json')).teachers;
    if (!Array.isArray(list) || list.length === 0) throw new MclipError(`${where('teachers.json')}: "teachers" must be a non-empty list of {name, dim, logit_scale}`);
    s.teachers = list.map((t, i) => {
      const o = t as Record<string, unknown>;
      if (typeof o !== 'object' || o === null || typeof o.name !== 'string' || !Number.isInteger(o.dim) || (o.dim as number) <= 0 || typeof o.logit_scale !== 'number')
        throw new MclipError(`${where('teachers.json')}: teacher ${i} must be {"name": string, "dim": positive integer, "logit_scale": number}`);
      return { name: o.name, dim: o.dim as number, logitScale: o.logit_scale };
    });
  }

  const arrays = readNpz(need('npz', 'image_emb/text_emb arrays'), where('npz'));
  const img = embedding(arrays, 'image_emb', where('npz'));
  const txt = embedding(arrays, 'text_emb', where('npz'));
  if (img.dim !== txt.dim) throw new MclipError(`${where('npz')}: image_emb width ${img.dim} != text_emb width ${txt.dim} (expected the same K·D)`);
  s.imageEmb = img.data;
  s.textEmb = txt.data;
  s.embDim = img.dim;
  validate(s, where, options.normTolerance ?? 0.02);

  for (const f of ['png', 'jpg'] as const) {
    const b = members.get(f);
    if (b) {
      s.image = { format: f, bytes: b };
      break;
    }
  }
  const cap = members.get('txt');
  if (cap) s.caption = utf8(cap, where('txt')).trim();
  return s;
}

/** Rows `r` of a row-major [rows, dim] embedding (a view). */
export function embRow(emb: Float32Array, dim: number, r: number): Float32Array {
  return emb.subarray(r * dim, (r + 1) * dim);
}

export const DR_REQUIRED_MEMBERS = ['json', 'syn.json', 'paug.json', 'npz'] as const;

/**
 * Decoded DataCompDR samples of a shard folder (or list of shards). Samples with missing members or
 * invalid content are reported in `summary.problems`, counted in `summary.skipped` and skipped.
 */
export class DrDatasetReader implements AsyncIterable<DrSample> {
  private readonly shards: ShardReader;
  private readonly normTolerance: number | false | undefined;
  constructor(source: string | readonly string[], options: Omit<ReadShardsOptions, 'required'> & { normTolerance?: number | false } = {}) {
    const { normTolerance, ...rest } = options;
    this.normTolerance = normTolerance;
    this.shards = new ShardReader(source, { ...rest, required: [...DR_REQUIRED_MEMBERS] });
  }
  get summary(): ShardReadSummary {
    return this.shards.summary;
  }
  get files(): string[] {
    return this.shards.files;
  }
  async *[Symbol.asyncIterator](): AsyncIterator<DrSample> {
    for await (const s of this.shards) {
      let d: DrSample;
      try {
        d = decodeDrSample(s.key, s.members, { shard: s.shard, normTolerance: this.normTolerance });
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

export function readDrDataset(source: string | readonly string[], options?: Omit<ReadShardsOptions, 'required'> & { normTolerance?: number | false }): DrDatasetReader {
  return new DrDatasetReader(source, options);
}
