/**
 * An emoji image–text dataset from the npm packages `emoji-datasource-<vendor>` (64×64 PNGs +
 * `emoji.json`: names, categories, subcategories, skin variations) and `emojibase-data` (CLDR
 * labels and tags). One sample per (emoji, vendor, skin-tone variant) the vendor has an image for.
 * Split by vendor: train on some vendors, evaluate on a held-out one (style shift, same classes).
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { MclipError } from '../../errors.js';
import { compositeToRgbPng, DatasetBuilder, type DatasetManifest, type Rgb } from './build.js';
import { dedupeCaptions, type ImageTextContent } from './sample.js';

export const EMOJI_VENDORS = ['google', 'twitter', 'facebook', 'apple'] as const;
export const EMOJI_PACKAGES_HINT = 'npm install --save-optional emoji-datasource-google emoji-datasource-twitter emoji-datasource-facebook emojibase-data';

const TONES: Record<string, string> = {
  '1F3FB': 'light skin tone',
  '1F3FC': 'medium-light skin tone',
  '1F3FD': 'medium skin tone',
  '1F3FE': 'medium-dark skin tone',
  '1F3FF': 'dark skin tone',
};

/** One entry of emoji-datasource's `emoji.json` (the fields used here). */
interface DatasourceEmoji {
  name: string | null;
  unified: string;
  non_qualified: string | null;
  image: string;
  short_names?: string[];
  category: string;
  subcategory: string;
  sort_order: number;
  skin_variations?: Record<string, { unified: string; non_qualified: string | null; image: string; [k: string]: unknown }>;
  [k: string]: unknown;
}

interface EmojibaseEntry {
  label: string;
  hexcode: string;
  tags?: string[];
  skins?: EmojibaseEntry[];
}

export interface EmojiOptions {
  /** vendors to read (default google, twitter, facebook) */
  vendors?: string[];
  /** held-out vendor for `eval/` (default facebook); the others go to `train/` */
  evalVendor?: string;
  /** output image side (default 64) */
  size?: number;
  /** background the transparent images are composited on (default white) */
  background?: Rgb;
  samplesPerShard?: number;
  /** keep only the first `limit` emoji (in emoji-datasource sort order), each with its skin variants */
  limit?: number;
  /** keep `sample` emoji evenly spaced over the sort order (so every category keeps its share), each with its skin variants */
  sample?: number;
  /** told about selections that are probably not what the user wants (e.g. `limit` dropping categories) */
  onWarning?: (message: string) => void;
  /** keep only emoji with one of these short names (e.g. `grinning`, `wave`) */
  only?: string[];
  force?: boolean;
  /** progress callback: (done, total) samples */
  onProgress?: (done: number, total: number) => void;
}

/** A sample to be built: where its image is and what its text is. */
export interface EmojiItem {
  key: string;
  vendor: string;
  file: string;
  caption: string;
  captions: string[];
  labels: Record<string, string>;
  source: Record<string, unknown>;
}

function resolvePackageDir(pkg: string): string {
  const req = createRequire(import.meta.url);
  try {
    return dirname(req.resolve(`${pkg}/package.json`));
  } catch {
    const hint = pkg === 'emojibase-data' || ['google', 'twitter', 'facebook'].some((v) => pkg === `emoji-datasource-${v}`) ? EMOJI_PACKAGES_HINT : `npm install --save-optional ${pkg}`;
    throw new MclipError(`npm package ${pkg} is not installed; run: ${hint}`);
  }
}

function readJson<T>(path: string): T {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch (e) {
    throw new MclipError(`${path}: cannot read JSON (${e instanceof Error ? e.message : String(e)})`, { cause: e });
  }
}

const article = (s: string): string => (/^[aeiou]/i.test(s) ? 'an' : 'a');

/** Caption text for an emoji: lower-cased name, plus ", <tone> skin tone" for skin variants. */
export function emojiCaption(name: string, toneKey?: string): string {
  const base = name.toLowerCase().trim();
  if (!toneKey) return base;
  return `${base}, ${toneNames(toneKey).join(', ')}`;
}

function toneNames(toneKey: string): string[] {
  return toneKey.split('-').map((t) => TONES[t.toUpperCase()] ?? `skin tone ${t.toLowerCase()}`);
}

/** Alternative captions (de-duplicated case-insensitively, never repeating `caption`). */
export function emojiAltCaptions(caption: string, label: string, tags: readonly string[], subcategory: string, shortNames: readonly string[]): string[] {
  // CLDR labels use "flag: Andorra" and "waving hand: medium skin tone"; templates read better as
  // "flag of andorra" and "waving hand, medium skin tone"
  const l = label
    .toLowerCase()
    .replace(/^flag: /, 'flag of ')
    .replace(/: /g, ', ');
  return dedupeCaptions(
    [
      label,
      `an emoji of ${article(l)} ${l}`,
      `${article(l)} ${l} emoji`,
      `an icon of ${article(l)} ${l}`,
      `a cartoon of ${article(l)} ${l}`,
      `an emoji of ${article(caption)} ${caption}`,
      ...tags,
      ...shortNames.map((s) => s.replace(/_/g, ' ')),
      subcategory,
      `${article(subcategory)} ${subcategory.replace(/-/g, ' ')} emoji`,
    ],
    [caption],
  );
}

class Emojibase {
  private readonly byHex = new Map<string, EmojibaseEntry>();
  constructor(entries: EmojibaseEntry[]) {
    const add = (e: EmojibaseEntry): void => {
      this.byHex.set(e.hexcode.toUpperCase(), e);
      this.byHex.set(e.hexcode.toUpperCase().replace(/-FE0F/g, ''), e);
      for (const s of e.skins ?? []) add({ ...s, tags: s.tags ?? e.tags });
    };
    entries.forEach(add);
  }
  get(...codes: (string | null | undefined)[]): EmojibaseEntry | undefined {
    for (const c of codes) {
      if (!c) continue;
      const e = this.byHex.get(c.toUpperCase()) ?? this.byHex.get(c.toUpperCase().replace(/-FE0F/g, ''));
      if (e) return e;
    }
    return undefined;
  }
}

/** Lists the samples (without images) for the given vendors; throws MclipError when a package is missing. */
export function listEmojiItems(options: Pick<EmojiOptions, 'vendors' | 'limit' | 'sample' | 'only'> = {}): {
  items: EmojiItem[];
  missingImages: number;
  packages: Record<string, string>;
  /** Categories of the vendors' emoji before `limit` (after `only`). */
  categoriesAvailable: string[];
  /** The smallest `limit` that keeps every available category. */
  limitForAllCategories: number;
} {
  const vendors = options.vendors ?? ['google', 'twitter', 'facebook'];
  const baseDir = resolvePackageDir('emojibase-data');
  const packages: Record<string, string> = { 'emojibase-data': readJson<{ version: string }>(join(baseDir, 'package.json')).version };
  const base = new Emojibase(readJson<EmojibaseEntry[]>(join(baseDir, 'en', 'data.json')));
  const items: EmojiItem[] = [];
  let missingImages = 0;
  const available = new Set<string>();
  let limitForAllCategories = 0;
  for (const vendor of vendors) {
    const pkg = `emoji-datasource-${vendor}`;
    const dir = resolvePackageDir(pkg);
    packages[pkg] = readJson<{ version: string }>(join(dir, 'package.json')).version;
    let list = readJson<DatasourceEmoji[]>(join(dir, 'emoji.json'))
      .slice()
      .sort((a, b) => a.sort_order - b.sort_order);
    if (options.only) {
      const want = new Set(options.only);
      list = list.filter((e) => (e.short_names ?? []).some((s) => want.has(s)));
    }
    const firstOfCategory = new Map<string, number>();
    list.forEach((e, i) => {
      if (!firstOfCategory.has(e.category)) firstOfCategory.set(e.category, i);
    });
    for (const [c, i] of firstOfCategory) {
      available.add(c);
      limitForAllCategories = Math.max(limitForAllCategories, i + 1);
    }
    if (options.limit !== undefined) list = list.slice(0, options.limit);
    if (options.sample !== undefined && options.sample < list.length) {
      const all = list;
      const n = options.sample;
      list = Array.from({ length: n }, (_, i) => all[Math.floor((i * all.length) / n)]!);
    }
    const flag = `has_img_${vendor}`;
    for (const e of list) {
      const eb = base.get(e.unified, e.non_qualified);
      const name = e.name ?? eb?.label ?? e.short_names?.[0]?.replace(/_/g, ' ') ?? e.unified;
      const variants: Array<{ toneKey?: string; unified: string; nonQualified: string | null; image: string; has: unknown }> = [
        { unified: e.unified, nonQualified: e.non_qualified, image: e.image, has: e[flag] },
        ...Object.entries(e.skin_variations ?? {}).map(([toneKey, v]) => ({ toneKey, unified: v.unified, nonQualified: v.non_qualified, image: v.image, has: v[flag] })),
      ];
      for (const v of variants) {
        if (v.has !== true) continue;
        const file = join(dir, 'img', vendor, '64', v.image);
        if (!existsSync(file)) {
          missingImages++;
          continue;
        }
        const ebv = base.get(v.unified, v.nonQualified) ?? eb;
        const caption = emojiCaption(name, v.toneKey);
        const label = ebv?.label ?? caption;
        const captions = emojiAltCaptions(caption, label, eb?.tags ?? [], e.subcategory, e.short_names ?? []);
        const labels: Record<string, string> = {
          category: e.category,
          subcategory: e.subcategory,
          name: name.toLowerCase(),
          emoji: (eb?.label ?? name).toLowerCase(),
          skin_tone: v.toneKey ? toneNames(v.toneKey).map((t) => t.replace(/ skin tone$/, '')).join(',') : 'none',
          vendor,
          unified: v.unified,
        };
        items.push({
          key: `${vendor}-${v.unified.toLowerCase()}`,
          vendor,
          file,
          caption,
          captions,
          labels,
          source: { package: pkg, version: packages[pkg], image: `img/${vendor}/64/${v.image}`, unified: v.unified },
        });
      }
    }
  }
  return { items, missingImages, packages, categoriesAvailable: [...available].sort(), limitForAllCategories };
}

/** Builds the emoji dataset into `out/train`, `out/eval` and `out/manifest.json`. */
export async function buildEmojiDataset(out: string, options: EmojiOptions = {}): Promise<DatasetManifest> {
  const vendors = options.vendors ?? ['google', 'twitter', 'facebook'];
  const evalVendor = options.evalVendor ?? 'facebook';
  if (new Set(vendors).size !== vendors.length) throw new MclipError(`--vendors: duplicated vendor in ${vendors.join(',')}`);
  for (const v of vendors) if (!/^[a-z]+$/.test(v)) throw new MclipError(`--vendors: bad vendor "${v}" (expected e.g. ${EMOJI_VENDORS.join(', ')})`);
  if (!vendors.includes(evalVendor)) throw new MclipError(`--eval-vendor ${evalVendor} is not among --vendors ${vendors.join(',')}`);
  if (vendors.length < 2) throw new MclipError(`--vendors: need at least 2 vendors (train on the others, evaluate on ${evalVendor}), got ${vendors.join(',')}`);
  const size = options.size ?? 64;
  if (!Number.isInteger(size) || size < 8 || size > 1024) throw new MclipError(`--size must be an integer in 8..1024, got ${size}`);
  const background = options.background ?? [255, 255, 255];
  if (options.limit !== undefined && options.sample !== undefined) throw new MclipError('--limit and --sample exclude each other: --limit takes the first N emoji, --sample N evenly spaced ones');
  const { items, missingImages, packages, categoriesAvailable, limitForAllCategories } = listEmojiItems({ vendors, limit: options.limit, sample: options.sample, only: options.only });
  const selected = new Set(items.map((it) => it.labels.category));
  if ((options.limit !== undefined || options.sample !== undefined) && selected.size < categoriesAvailable.length) {
    const missing = categoriesAvailable.filter((c) => !selected.has(c));
    const left = `${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ', …' : ''} ${missing.length === 1 ? 'is' : 'are'} left out`;
    const classes = `zero-shot over categories on this data has ${selected.size} class${selected.size === 1 ? '' : 'es'}`;
    options.onWarning?.(
      options.limit !== undefined
        ? `--limit ${options.limit} keeps ${selected.size} of ${categoriesAvailable.length} categories (emoji are taken in sort order, so ${left}); ${classes}: use --sample ${options.limit} to spread ${options.limit} emoji over all categories (or --limit ${limitForAllCategories} or more)`
        : `--sample ${options.sample} keeps ${selected.size} of ${categoriesAvailable.length} categories (${left}); ${classes}: raise --sample to keep all`,
    );
  }
  if (items.length === 0) throw new MclipError(`emoji: no samples selected (vendors ${vendors.join(',')}${options.only ? `, --only ${options.only.join(',')}` : ''})`);
  const builder = new DatasetBuilder(out, { splits: ['train', 'eval'], samplesPerShard: options.samplesPerShard, force: options.force });
  try {
    const batch = 32;
    for (let i = 0; i < items.length; i += batch) {
      const chunk = items.slice(i, i + batch);
      const pngs = await Promise.all(chunk.map((it) => compositeToRgbPng(it.file, size, background)));
      for (let j = 0; j < chunk.length; j++) {
        const it = chunk[j];
        const content: ImageTextContent = { image: pngs[j], caption: it.caption, captions: it.captions, labels: it.labels, source: it.source };
        await builder.add(it.vendor === evalVendor ? 'eval' : 'train', it.key, content, it.vendor);
      }
      options.onProgress?.(Math.min(i + batch, items.length), items.length);
    }
    return await builder.close({
      name: 'emoji',
      image: { width: size, height: size },
      source: { packages, vendors, trainVendors: vendors.filter((v) => v !== evalVendor), evalVendor, background: [...background], missingImages, limit: options.limit ?? null, sample: options.sample ?? null, only: options.only ?? null },
    });
  } catch (e) {
    builder.abort();
    throw e;
  }
}
