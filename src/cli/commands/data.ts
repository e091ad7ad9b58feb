import type { Argv } from 'yargs';
import { withOptions, type OptionTable } from '../options.js';
import cliProgress from 'cli-progress';
import { MclipError } from '../../errors.js';
import { buildEmojiDataset, parseRgb, type DatasetManifest } from '../../base/data/index.js';
import { buildFashionMnistDataset, FASHION_MNIST_DEFAULT_DIR } from '../../base/data/fashion-mnist.js';

export interface DataEmojiArgs {
  out: string;
  vendors: string;
  'eval-vendor': string;
  size: number;
  background: string;
  'samples-per-shard': number;
  limit?: number;
  sample?: number;
  only?: string;
  force: boolean;
}

export interface DataFashionArgs {
  out: string;
  idx: string;
  'samples-per-shard': number;
  limit?: number;
  force: boolean;
}

function checkCount(name: string, v: number | undefined, min: number): void {
  if (v !== undefined && (!Number.isInteger(v) || v < min)) throw new MclipError(`--${name} must be an integer ≥ ${min}, got ${v}`);
}

/** A progress bar on stderr (silent when stderr is not a terminal). */
function progress(label: string): { update: (done: number, total: number) => void; stop: () => void } {
  const bar = new cliProgress.SingleBar(
    { format: `${label} [{bar}] {percentage}% | {value}/{total} samples | eta {eta_formatted}`, stream: process.stderr, hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(done, total) {
      if (!started) {
        bar.start(total, 0);
        started = true;
      }
      bar.update(done);
    },
    stop() {
      if (started) bar.stop();
      started = false;
    },
  };
}

function mb(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

function report(m: DatasetManifest, out: string): void {
  const parts = Object.entries(m.splits).map(([s, st]) => `${s} ${st.samples} samples in ${st.shards} shard(s), ${mb(st.bytes)}${Object.keys(st.groups).length ? ` (${Object.entries(st.groups).map(([g, n]) => `${g} ${n}`).join(', ')})` : ''}`);
  console.error(`mclip: ${m.name}: ${parts.join('; ')}; ${m.categories.length} categories`);
  console.error(`mclip: ${m.name}: total ${m.totalSamples} samples, ${mb(m.totalBytes)} (${m.totalBytes} bytes), built in ${m.buildSeconds.toFixed(1)} s → ${out}`);
  console.log(JSON.stringify({ out, samples: m.totalSamples, bytes: m.totalBytes, seconds: m.buildSeconds, splits: Object.fromEntries(Object.entries(m.splits).map(([s, st]) => [s, st.samples])) }));
}

export const DATA_EMOJI_OPTIONS = {
  out: { type: 'string', demandOption: true, describe: 'output folder (gets train/, eval/, manifest.json)' },
  vendors: { type: 'string', default: 'google,twitter,facebook', describe: 'comma-separated emoji-datasource vendors' },
  'eval-vendor': { type: 'string', default: 'facebook', describe: 'vendor held out for eval/' },
  size: { type: 'number', default: 64, describe: 'image side in pixels' },
  background: { type: 'string', default: '255,255,255', describe: 'R,G,B background for transparent pixels' },
  'samples-per-shard': { type: 'number', default: 1000, describe: 'samples per tar shard' },
  limit: { type: 'number', describe: 'only the first N emoji (with their skin variants) per vendor' },
  sample: { type: 'number', describe: 'only N emoji evenly spaced over the sort order (every category keeps its share), with their skin variants' },
  only: { type: 'string', describe: 'only these emoji short names, comma-separated (e.g. grinning,wave)' },
  force: { type: 'boolean', default: false, describe: 'replace shards already in the output folders' },
} as const satisfies OptionTable;

export const DATA_FASHION_MNIST_OPTIONS = {
  out: { type: 'string', demandOption: true, describe: 'output folder (gets train/, eval/, manifest.json)' },
  idx: { type: 'string', default: FASHION_MNIST_DEFAULT_DIR, describe: 'folder with {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]' },
  'samples-per-shard': { type: 'number', default: 1000, describe: 'samples per tar shard' },
  limit: { type: 'number', describe: 'only the first N images of each split' },
  force: { type: 'boolean', default: false, describe: 'replace shards already in the output folders' },
} as const satisfies OptionTable;

export function dataCommand(y: Argv): Argv {
  return y.command('data', 'build image–text datasets as webdataset shards', (v) =>
    v
      .command<DataEmojiArgs>(
        'emoji',
        'emoji images (npm emoji-datasource-*, emojibase-data) → train (some vendors) / eval (held-out vendor) shards',
        (a) =>
          withOptions(a, DATA_EMOJI_OPTIONS) as unknown as Argv<DataEmojiArgs>,
        async (args) => {
          checkCount('samples-per-shard', args['samples-per-shard'], 1);
          checkCount('limit', args.limit, 1);
          checkCount('sample', args.sample, 1);
          checkCount('size', args.size, 8);
          const bar = progress('emoji');
          try {
            const m = await buildEmojiDataset(args.out, {
              vendors: args.vendors.split(',').map((s) => s.trim()).filter(Boolean),
              evalVendor: args['eval-vendor'],
              size: args.size,
              background: parseRgb(args.background),
              samplesPerShard: args['samples-per-shard'],
              limit: args.limit,
              sample: args.sample,
              only: args.only?.split(',').map((s) => s.trim()).filter(Boolean),
              force: args.force,
              onProgress: bar.update,
              onWarning: (msg) => {
                bar.stop();
                console.error(`mclip: warning: ${msg}`);
              },
            });
            bar.stop();
            report(m, args.out);
          } finally {
            bar.stop();
          }
        },
      )
      .command<DataFashionArgs>(
        'fashion-mnist',
        'Fashion-MNIST IDX files (Debian dataset-fashion-mnist) → train / eval shards',
        (a) =>
          withOptions(a, DATA_FASHION_MNIST_OPTIONS) as unknown as Argv<DataFashionArgs>,
        async (args) => {
          checkCount('samples-per-shard', args['samples-per-shard'], 1);
          checkCount('limit', args.limit, 1);
          const bar = progress('fashion-mnist');
          try {
            const m = await buildFashionMnistDataset(args.out, { idx: args.idx, samplesPerShard: args['samples-per-shard'], limit: args.limit, force: args.force, onProgress: bar.update });
            bar.stop();
            report(m, args.out);
          } finally {
            bar.stop();
          }
        },
      )
      .demandCommand(1, 'name a data subcommand (emoji, fashion-mnist)'),
  );
}
