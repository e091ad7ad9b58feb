/**
 * Progress on stderr for long commands: a cli-progress bar with elapsed time and ETA when stderr is a
 * terminal; otherwise plain `mclip: …` lines (each further tenth of the work, and at the end) so a log
 * shows progress too. Silent with `quiet`.
 */
import cliProgress from 'cli-progress';

/** `42 s`, `3 min 05 s`, `1 h 07 min`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
}

/** Seconds left at a constant rate, measured from `startValue` (work already done before this run is not counted). */
export function etaSeconds(elapsed: number, done: number, startValue: number, total: number): number {
  const rate = (done - startValue) / Math.max(elapsed, 1e-9);
  return rate > 0 ? (total - done) / rate : Number.NaN;
}

/** Seconds between progress lines in a log (no terminal): $MCLIP_PROGRESS_SECONDS, default 30. */
export function progressLogSeconds(): number {
  const v = Number(process.env.MCLIP_PROGRESS_SECONDS);
  return process.env.MCLIP_PROGRESS_SECONDS !== undefined && Number.isFinite(v) && v >= 0 ? v : 30;
}

export interface ProgressOptions {
  /** First word of the bar / lines, e.g. `eval`, `train`. */
  label: string;
  total: number;
  /** Work already done (a resumed run). */
  start?: number;
  /** Unit after the counts (`samples`, `steps`). */
  unit: string;
  quiet?: boolean;
  /** Defaults to process.stderr. */
  stream?: NodeJS.WriteStream;
  /** Force the bar (true) or the lines (false); default: whether the stream is a terminal. */
  tty?: boolean;
}

export interface Progress {
  /** Sets the done count; `info` is shown after the counts (e.g. `loss 1.23`). */
  update(done: number, info?: string): void;
  stop(): void;
}

export function startProgress(o: ProgressOptions): Progress {
  const stream = o.stream ?? process.stderr;
  const t0 = performance.now();
  const startValue = o.start ?? 0;
  const elapsed = () => (performance.now() - t0) / 1000;
  if (o.quiet) return { update: () => undefined, stop: () => undefined };
  const tty = o.tty ?? Boolean(stream.isTTY);
  let last = startValue;
  let info = '';
  const eta = () => formatDuration(etaSeconds(elapsed(), last, startValue, o.total));
  if (tty) {
    const bar = new cliProgress.SingleBar(
      {
        format: `${o.label} [{bar}] {value}/{total} ${o.unit} | {elapsedText} elapsed | eta {etaText}{info}`,
        stream,
        hideCursor: true,
        fps: 5,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(o.total, startValue, { elapsedText: '0 s', etaText: '?', info: '' });
    let stopped = false;
    return {
      update(done, text) {
        last = done;
        info = text ? ` | ${text}` : '';
        bar.update(done, { elapsedText: formatDuration(elapsed()), etaText: eta(), info });
      },
      stop() {
        if (stopped) return;
        stopped = true;
        bar.update(last, { elapsedText: formatDuration(elapsed()), etaText: eta(), info });
        bar.stop();
      },
    };
  }
  let nextTenth = Math.floor((10 * startValue) / Math.max(1, o.total)) + 1;
  const line = () => {
    const pct = o.total > 0 ? Math.floor((100 * last) / o.total) : 100;
    stream.write(`mclip: ${o.label} ${last}/${o.total} ${o.unit} (${pct} %) | ${formatDuration(elapsed())} elapsed | eta ${eta()}${info}\n`);
  };
  let printedEnd = false;
  return {
    update(done, text) {
      last = done;
      info = text ? ` | ${text}` : '';
      if (o.total > 0 && done >= (nextTenth * o.total) / 10) {
        nextTenth = Math.floor((10 * done) / o.total) + 1;
        if (done >= o.total) printedEnd = true;
        line();
      }
    },
    stop() {
      if (!printedEnd && last > startValue && last >= o.total) line();
      printedEnd = true;
    },
  };
}
