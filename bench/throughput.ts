/**
 * bench/throughput — in one run on this machine: the `mobileclip_tiny` train step (batch 32) with 1 and 2
 * data-parallel ranks beside the PyTorch anchor (the official code, ../shared/anchors/torch_train_step.py,
 * 1 and 2 threads; needs $REFSRC) and the machine's ceiling for two ranks (two independent one-thread
 * processes at half the batch, run together), 1 and 2 ranks again with their steps alternating (paired, so
 * drift between blocks of runs does not enter the ratio), embedding throughput of `mclip eval`'s engines
 * (tfjs on wasm vs the ONNX export in onnxruntime-node, alternating in blocks of batches) for mobileclip_tiny and,
 * when the fixture is present, MobileCLIP-S0, and `mclip reinforce` samples/s with each engine. Each
 * measurement runs alone (one after the other).
 *
 * Last, `mclip eval` end to end (the whole command's wall time on `--eval-sample` held-out samples of
 * `--eval-data`, default `--data`): tfjs, ORT and, with `--old-cli OLD/bin/mclip.js`, an older checkout's tfjs path.
 *
 *   npm run build && REFSRC=/path/to/refsrc node dist/bench/throughput.js [--work bench-out/throughput] [--model CKPT] [--data DIR --vocab DIR]
 *     [--eval-data DIR] [--eval-sample 1000] [--eval-rounds 3] [--old-cli PATH] [--sections train,embed,reinforce,eval]
 *
 * Prints a markdown table and writes it to WORK/throughput.md.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import * as tf from '../src/base/tf.js';
import { initBackend } from '../src/base/backend/index.js';
import { CLIP } from '../src/base/model/clip.js';
import { getConfig } from '../src/base/model/configs.js';
import { loadModel, saveModel } from '../src/base/model/checkpoint.js';
import { openEngine } from '../src/eval/engine-ort.js';
import type { EngineName } from '../src/eval/engine.js';
import { ROOT, arg, mclip } from './common.js';
import type { EvalReport } from '../src/eval/report.js';
import { concurrentHalfSteps, pairedTrainSteps, timeTrainStep, torchAnchor } from './throughput-train.js';

interface EmbedRate {
  model: string;
  engine: EngineName;
  imagesPerSec: number;
  textsPerSec: number;
  /** One image and one text per sample (what an eval embeds per sample, prompts aside). */
  samplesPerSec: number;
}

/**
 * Images and texts per second of the tfjs and ORT engines over `n` samples in batches of 32 (after one
 * warm-up batch each), the two engines alternating in blocks of up to 4 batches (tfjs ORT, then ORT tfjs, …) so
 * that the machine's drift hits both alike.
 */
async function embedRates(label: string, ckpt: string, n: number, cacheDir: string): Promise<EmbedRate[]> {
  const { model, config } = await loadModel(ckpt, { fused: true });
  const names = ['tfjs', 'ort'] as const;
  const engines = await Promise.all(names.map((e) => openEngine(e, model, { checkpoint: ckpt, root: cacheDir })));
  try {
    for (const [i, o] of engines.entries()) if (o.report.engine !== names[i]) throw new Error(`${label}: ${o.line}`);
    const s = config.image.imageSize;
    const ctx = config.text.contextLength;
    const b = 32;
    const pixels = Float32Array.from({ length: b * 3 * s * s }, (_, i) => ((i * 2654435761) % 1000) / 1000);
    const tokens = new Int32Array(b * ctx);
    for (let r = 0; r < b; r++) {
      tokens[r * ctx] = config.text.vocabSize - 2;
      for (let j = 1; j < 12; j++) tokens[r * ctx + j] = 1 + ((r * 31 + j * 7) % (config.text.vocabSize - 3));
      tokens[r * ctx + 12] = config.text.vocabSize - 1;
    }
    for (const { engine: e } of engines) {
      await e.encodeImages(pixels, b, 'nchw');
      await e.encodeTexts(tokens, b);
    }
    const batches = Math.ceil(n / b);
    const img = [0, 0];
    const txt = [0, 0];
    // blocks of `blk` batches per engine, the engines' order alternating block by block: switching engine at every
    // call cost ORT most of its speed (535 against 1,390 texts/s for the tiny text tower measured alone, 2026-12-04:
    // its thread pool and caches go cold while tfjs runs)
    const blk = Math.max(1, Math.min(4, Math.floor(batches / 2)));
    for (let i = 0; i < batches; i += blk) {
      const nb = Math.min(blk, batches - i);
      for (const k of (i / blk) % 2 === 0 ? [0, 1] : [1, 0]) {
        const e = engines[k]!.engine;
        let t0 = performance.now();
        for (let j = 0; j < nb; j++) await e.encodeImages(pixels, b, 'nchw');
        img[k]! += (performance.now() - t0) / 1000;
        t0 = performance.now();
        for (let j = 0; j < nb; j++) await e.encodeTexts(tokens, b);
        txt[k]! += (performance.now() - t0) / 1000;
      }
    }
    const m = batches * b;
    return names.map((engine, k) => ({ model: label, engine, imagesPerSec: m / img[k]!, textsPerSec: m / txt[k]!, samplesPerSec: m / (img[k]! + txt[k]!) }));
  } finally {
    for (const o of engines) await o.engine.dispose();
    model.dispose();
  }
}

/** `mclip reinforce` samples/s (summed over its shard lines) with one tiny teacher and `engine`. */
async function reinforceRate(data: string, vocab: string, teacher: string, engine: EngineName, work: string): Promise<number> {
  const out = join(work, `reinforce-${engine}`);
  rmSync(out, { recursive: true, force: true });
  const log = join(work, 'logs', `reinforce-${engine}.log`);
  await mclip(['reinforce', '--data', data, '--split', 'train', '--teacher', teacher, '--augs', '2', '--syn', '2', '--out', out, '--vocab', vocab, '--engine', engine], log);
  const { readFileSync } = await import('node:fs');
  let samples = 0;
  let seconds = 0;
  for (const m of readFileSync(log, 'utf8').matchAll(/: (\d+) samples(?: \([^)]*\))? in (\d+(?:\.\d+)?) s/g)) {
    samples += Number(m[1]);
    seconds += Number(m[2]);
  }
  return samples / seconds;
}

interface EvalWall {
  label: string;
  /** Median wall time of the whole `mclip eval` command (start-up, decoding, classifier, embedding, metrics). */
  medianS: number;
  runs: number[];
  /** Zero-shot top-1 / top-5 and R@1 i→t / t→i of the run, in %. */
  figures: [number, number, number, number];
  /** Samples evaluated (the report's). */
  samples: number;
  /** The embedding passes' own time in the last run, when the report gives it (this checkout's does). */
  embedS: number | null;
}

/**
 * `mclip eval` end to end, as a user runs it: the wall time of the whole command on `sample` held-out samples,
 * tfjs and ORT, and (with `--old-cli`) the tfjs path of an older checkout, the commands rotating round by round
 * (one untimed round first: it fills the ORT export cache and the page cache). Each command's figures come from
 * its JSON report, so the table shows that the engines agree.
 */
async function evalWall(tiny: string, data: string, vocab: string, sample: number, rounds: number, oldCli: string, work: string): Promise<EvalWall[]> {
  const base = ['eval', '--model', tiny, '--data', data, '--split', 'eval', '--vocab', vocab, '--sample', String(sample), '--label', 'category', '--no-latency', '--quiet'];
  const jobs: Array<{ label: string; args: string[]; cli?: string }> = [
    { label: 'tfjs (this checkout)', args: ['--engine', 'tfjs', '--no-ort'] },
    { label: 'ort (this checkout)', args: ['--engine', 'ort', '--no-ort'] },
  ];
  if (oldCli) jobs.push({ label: `tfjs at ${oldCli.replace(/\/bin\/mclip\.js$/, '')} (its only engine)`, args: ['--no-ort'], cli: oldCli });
  const times = jobs.map((): number[] => []);
  const figures = jobs.map((): [number, number, number, number] => [0, 0, 0, 0]);
  const samples = jobs.map(() => 0);
  const embedS = jobs.map((): number | null => null);
  for (let r = 0; r <= rounds; r++) {
    for (let k = 0; k < jobs.length; k++) {
      const j = (k + r) % jobs.length;
      const json = join(work, `eval-wall-${j}.json`);
      const t = Date.now();
      await mclip([...base, ...jobs[j].args, '--json', json], join(work, 'logs', `eval-wall-${j}.log`), jobs[j].cli);
      if (r > 0) times[j].push((Date.now() - t) / 1000);
      const report = JSON.parse(readFileSync(json, 'utf8')) as EvalReport;
      const row = report.rows[0];
      samples[j] = Number(report.meta.samples);
      const eng = (report.meta.engines as Array<{ embedSeconds?: number }> | undefined)?.[0];
      embedS[j] = typeof eng?.embedSeconds === 'number' ? eng.embedSeconds : null;
      const pct = (v: number | undefined) => Math.round((v ?? NaN) * 1000) / 10;
      figures[j] = [pct(row.zeroShot?.top1), pct(row.zeroShot?.top5), pct(row.retrieval?.i2t.r1), pct(row.retrieval?.t2i.r1)];
    }
  }
  const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
  return jobs.map((j, i) => ({ label: j.label, medianS: median(times[i]), runs: times[i], figures: figures[i], samples: samples[i], embedS: embedS[i] }));
}

async function main(): Promise<void> {
  const work = resolve(arg('work', 'bench-out/throughput'));
  const cacheDir = join(work, 'cache');
  mkdirSync(join(work, 'logs'), { recursive: true });
  await initBackend({ backend: 'wasm' });
  const lines: string[] = [];
  const t0 = Date.now();
  const sections = new Set(arg('sections', 'train,embed,reinforce,eval').split(','));
  for (const x of sections) if (!['train', 'embed', 'reinforce', 'eval'].includes(x)) throw new Error(`--sections: unknown section '${x}' (train, embed, reinforce, eval)`);

  // 1. Training.
  if (sections.has('train')) {
    const one = await timeTrainStep(1);
    const two = await timeTrainStep(2);
    const ceiling = await concurrentHalfSteps(32);
    const paired = await pairedTrainSteps(2);
    const pt1 = torchAnchor(1, ROOT);
    const pt2 = torchAnchor(2, ROOT);
    const ms = (v: number | null) => (v == null ? '—' : `${(v / 1000).toFixed(2)} s`);
    lines.push(
      '### Training: `mobileclip_tiny`, batch 32, forward + backward + AdamW (median of 10 steps after 3)',
      '',
      '| | step | samples/s | vs mclip 1 worker | vs PyTorch 1 thread |',
      '|---|---|---|---|---|',
      `| mclip, 1 worker (wasm, 1 thread) | ${ms(one.medianMs)} | ${one.samplesPerSec.toFixed(1)} | 1.00× | ${pt1.medianMs ? (pt1.medianMs / one.medianMs).toFixed(2) + '×' : '—'} |`,
      `| mclip, 2 workers (data-parallel) | ${ms(two.medianMs)} | ${two.samplesPerSec.toFixed(1)} | ${(one.medianMs / two.medianMs).toFixed(2)}× | ${pt1.medianMs ? (pt1.medianMs / two.medianMs).toFixed(2) + '×' : '—'} |`,
      `| paired: 1 worker and 2 workers alternating step by step, 20 steps each (median of the per-step ratios) | ${ms(paired.one.medianMs)} / ${ms(paired.many.medianMs)} | ${paired.one.samplesPerSec.toFixed(1)} / ${paired.many.samplesPerSec.toFixed(1)} | ${paired.medianRatio.toFixed(2)}× | ${pt1.medianMs ? (pt1.medianMs / paired.many.medianMs).toFixed(2) + '×' : '—'} |`,
      `| ceiling: 2 independent processes at batch 16 each, run together (no exchange) | ${ms(ceiling.medianMs)} | ${((32 * 1000) / ceiling.medianMs).toFixed(1)} | ${(one.medianMs / ceiling.medianMs).toFixed(2)}× | ${pt1.medianMs ? (pt1.medianMs / ceiling.medianMs).toFixed(2) + '×' : '—'} |`,
      `| PyTorch 1.13 CPU, 1 thread (official code) | ${ms(pt1.medianMs)} | ${pt1.medianMs ? ((32 * 1000) / pt1.medianMs).toFixed(1) : '—'} | | ${pt1.medianMs ? '1.00×' : pt1.note} |`,
      `| PyTorch 1.13 CPU, 2 threads | ${ms(pt2.medianMs)} | ${pt2.medianMs ? ((32 * 1000) / pt2.medianMs).toFixed(1) : '—'} | | ${pt2.medianMs && pt1.medianMs ? (pt1.medianMs / pt2.medianMs).toFixed(2) + '×' : pt2.note} |`,
      '',
    );
  }

  // 2. Embedding engines.
  // A mobileclip_tiny checkpoint: --model (e.g. models/mclip-emoji.safetensors), else a random one.
  const tiny = arg('model', '') ? resolve(arg('model', '')) : join(work, 'tiny.safetensors');
  if (!existsSync(tiny)) {
    const m = new CLIP(getConfig('mobileclip_tiny'), { seed: 1 });
    saveModel(m, tiny);
    m.dispose();
  }
  const models: Array<[string, string]> = [['mobileclip_tiny', tiny]];
  const s0 = join(ROOT, '..', 'shared', 'fixtures', 'mobileclip_s0', 'model_fp16.pt');
  if (existsSync(s0)) models.push(['MobileCLIP-S0 (fixture weights)', s0]);
  const rates: EmbedRate[] = [];
  for (const [label, ckpt] of sections.has('embed') ? models : []) {
    rates.push(...(await embedRates(label, ckpt, label.startsWith('Mobile') ? 64 : 256, cacheDir)));
  }
  if (rates.length) lines.push('### Evaluation: embedding throughput, batch 32 (tfjs wasm 1 thread vs onnxruntime-node 2 threads, alternating in blocks of up to 4 batches)', '', '| model | engine | images/s | texts/s | samples/s (image + text) | ORT / tfjs |', '|---|---|---|---|---|---|');
  for (const r of rates) {
    const base = rates.find((q) => q.model === r.model && q.engine === 'tfjs')!;
    lines.push(`| ${r.model} | ${r.engine} | ${r.imagesPerSec.toFixed(0)} | ${r.textsPerSec.toFixed(0)} | ${r.samplesPerSec.toFixed(0)} | ${(r.samplesPerSec / base.samplesPerSec).toFixed(2)}× |`);
  }
  if (rates.length) lines.push('');

  // 3. Reinforcement.
  const data = arg('data', '');
  const vocab = arg('vocab', '');
  if (!sections.has('reinforce')) {
    // not asked for
  } else if (data && vocab) {
    const tRate = await reinforceRate(resolve(data), resolve(vocab), tiny, 'tfjs', work);
    const oRate = await reinforceRate(resolve(data), resolve(vocab), tiny, 'ort', work);
    lines.push('### Reinforcement: `mclip reinforce`, one mobileclip_tiny teacher, 2 augmentations + 2 synthetic captions per sample', '', '| engine | samples/s |', '|---|---|', `| tfjs | ${tRate.toFixed(1)} |`, `| ort | ${oRate.toFixed(1)} (${(oRate / tRate).toFixed(2)}×) |`, '');
  } else lines.push('(reinforcement not measured: pass --data and --vocab, e.g. a `mclip data emoji --sample 256` folder)', '');
  // 4. `mclip eval` end to end.
  const evalData = arg('eval-data', data);
  if (!sections.has('eval')) {
    // not asked for
  } else if (evalData && vocab) {
    const sample = Number(arg('eval-sample', '1000'));
    const oldCli = arg('old-cli', '');
    const walls = await evalWall(tiny, resolve(evalData), resolve(vocab), sample, Number(arg('eval-rounds', '3')), oldCli ? resolve(oldCli) : '', work);
    const tfjs = walls[0];
    lines.push(
      `### \`mclip eval\` end to end: mobileclip_tiny, ${walls[0].samples} held-out samples (zero-shot + retrieval, no latency), wall time of the command (median of ${walls[0].runs.length}, rotating)`,
      '',
      '| path | wall s (runs) | vs tfjs (this checkout) | embedding s (last run) | samples | zero-shot top-1 / top-5 % | R@1 i→t / t→i % |',
      '|---|---|---|---|---|---|---|',
    );
    for (const w of walls) {
      lines.push(
        `| ${w.label} | ${w.medianS.toFixed(2)} (${w.runs.map((x) => x.toFixed(2)).join(', ')}) | ${(tfjs.medianS / w.medianS).toFixed(2)}× | ${w.embedS == null ? '—' : w.embedS.toFixed(2)} | ${w.samples} | ${w.figures[0]} / ${w.figures[1]} | ${w.figures[2]} / ${w.figures[3]} |`,
      );
    }
    if (walls.length > 2) lines.push('', `ORT (this checkout) against the older checkout's tfjs path: ${(walls[2].medianS / walls[1].medianS).toFixed(2)}×.`);
    lines.push('');
  } else lines.push('(`mclip eval` end to end not measured: pass --eval-data (or --data) and --vocab)', '');
  lines.push(`Measured ${new Date().toISOString().slice(0, 16)} UTC in ${((Date.now() - t0) / 1000).toFixed(0)} s; backend ${tf.getBackend()}.`);
  const md = lines.join('\n');
  writeFileSync(join(work, 'throughput.md'), md + '\n');
  console.log(md);
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? (e.stack ?? e.message) : String(e));
  process.exit(1);
});
