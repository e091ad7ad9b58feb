/**
 * Backend selection for mclip.
 *
 * Order (first that loads AND initialises wins): @tensorflow/tfjs-node-gpu, @tensorflow/tfjs-node
 * (both optional dependencies; they need libtensorflow, downloaded at install time),
 * @tensorflow/tfjs-backend-wasm (non-threaded SIMD build, with mclip's extra kernels), cpu.
 * Override with `opts.backend` or MCLIP_BACKEND: auto | tfjs-node-gpu | tfjs-node | tensorflow | wasm | cpu.
 */
import * as tf from '@tensorflow/tfjs-core';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { MclipError } from '../../errors.js';
import { gradientsRegistered, registerGradients } from './gradients.js';
import { registerWasmKernels } from './wasm-kernels/index.js';
import { firstTime, nativeHint, nativeReason } from './native-notice.js';

export { registerGradients, gradientsRegistered } from './gradients.js';
export { registerWasmKernels, ADDED_WASM_KERNELS, OVERRIDDEN_WASM_KERNELS } from './wasm-kernels/index.js';

export interface BackendInfo {
  /** The tfjs backend name (tf.getBackend()). */
  name: 'tensorflow' | 'wasm' | 'cpu';
  /** The npm package providing it. */
  package: string;
  gpu: boolean;
  threads: number;
  /** wasm only: whether the SIMD build is used. */
  simd?: boolean;
  /** Automatic choice only: why the native @tensorflow/tfjs-node backend is not the one running. */
  nativeUnavailable?: string;
}

export interface InitBackendOptions {
  /** auto | tfjs-node-gpu | tfjs-node | tensorflow | wasm | cpu (default: MCLIP_BACKEND, else auto). */
  backend?: string;
  /** Intra-op threads for tfjs-node (sets TF_NUM_INTRAOP_THREADS before loading it). wasm in Node is single-threaded. */
  threads?: number;
  /** Don't print the choice to stderr. */
  quiet?: boolean;
  /** Register tfjs' gradient functions (needed for training; ~0.8 s once). Default true. */
  gradients?: boolean;
}

export const BACKEND_CHOICES = ['auto', 'tfjs-node-gpu', 'tfjs-node', 'tensorflow', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKEND_CHOICES)[number];

const NODE_GPU = '@tensorflow/tfjs-node-gpu';
const NODE_CPU = '@tensorflow/tfjs-node';
const WASM = '@tensorflow/tfjs-backend-wasm';
const CPU = '@tensorflow/tfjs-backend-cpu';

type Loader = (specifier: string) => Promise<unknown>;
const defaultLoader: Loader = (specifier) => import(specifier);
let loader: Loader = defaultLoader;

/** @internal Tests: replace how optional backend packages are imported (null restores the default). */
export function setBackendModuleLoader(f: Loader | null): void {
  loader = f ?? defaultLoader;
}

/** Parses a backend name (case-insensitive); throws an MclipError for unknown names. */
export function parseBackendChoice(value: string | undefined, source = '--backend'): BackendChoice {
  const v = (value ?? '').trim().toLowerCase();
  if (v === '') return 'auto';
  const alias: Record<string, BackendChoice> = {
    '@tensorflow/tfjs-node-gpu': 'tfjs-node-gpu',
    '@tensorflow/tfjs-node': 'tfjs-node',
    node: 'tfjs-node',
    '@tensorflow/tfjs-backend-wasm': 'wasm',
    '@tensorflow/tfjs-backend-cpu': 'cpu',
  };
  const c = (alias[v] ?? v) as BackendChoice;
  if (!(BACKEND_CHOICES as readonly string[]).includes(c)) {
    throw new MclipError(`unknown backend '${value}' (from ${source}); expected one of: ${BACKEND_CHOICES.join(', ')}`);
  }
  return c;
}

function reasonOf(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n')[0]!.trim() || 'unknown error';
}

type Attempt = { ok: true; info: BackendInfo } | { ok: false; reason: string };

async function tryTfjsNode(pkg: string, threads: number | undefined): Promise<Attempt> {
  const setThreads = threads != null && threads > 0 && process.env.TF_NUM_INTRAOP_THREADS == null;
  if (setThreads) process.env.TF_NUM_INTRAOP_THREADS = String(threads);
  let mod: Record<string, unknown>;
  try {
    mod = (await loader(pkg)) as Record<string, unknown>;
  } catch (e) {
    if (setThreads) delete process.env.TF_NUM_INTRAOP_THREADS;
    return { ok: false, reason: reasonOf(e) };
  }
  // tfjs-node re-exports tfjs-core; a different tfjs-core copy/version means tensors and kernels
  // from the two would not mix (engine and registries are global, classes and ops are not).
  const theirCore = (mod.version_core ?? (mod.default as Record<string, unknown> | undefined)?.version_core) as string | undefined;
  if (theirCore != null && theirCore !== tf.version_core) {
    return {
      ok: false,
      reason: `it uses @tensorflow/tfjs-core ${theirCore} but mclip uses ${tf.version_core}; install matching versions (npm dedupe)`,
    };
  }
  if (tf.findBackendFactory('tensorflow') == null) {
    return { ok: false, reason: `it did not register the 'tensorflow' backend with mclip's @tensorflow/tfjs-core instance (duplicate tfjs-core copy? run npm dedupe)` };
  }
  try {
    if (!(await tf.setBackend('tensorflow'))) return { ok: false, reason: 'the tensorflow backend failed to initialise' };
  } catch (e) {
    return { ok: false, reason: reasonOf(e) };
  }
  const b = tf.backend() as { isUsingGpuDevice?: boolean };
  const gpu = pkg === NODE_GPU && b.isUsingGpuDevice !== false;
  const n = Number(process.env.TF_NUM_INTRAOP_THREADS);
  return { ok: true, info: { name: 'tensorflow', package: pkg, gpu, threads: n > 0 ? n : availableParallelism() } };
}

function wasmDistDir(): string | null {
  try {
    return dirname(createRequire(import.meta.url).resolve(WASM));
  } catch {
    return null;
  }
}

async function tryWasm(): Promise<Attempt> {
  let wasm: typeof import('@tensorflow/tfjs-backend-wasm');
  try {
    wasm = await import('@tensorflow/tfjs-backend-wasm');
  } catch (e) {
    return { ok: false, reason: reasonOf(e) };
  }
  try {
    if (tf.findBackend('wasm') == null) {
      // The threaded build does not work in Node: never pick it. tfjs 4.22 already reports no
      // thread support under Node; pin the flag and map the threaded binary to the SIMD one anyway.
      tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
      const dist = wasmDistDir();
      if (dist != null) {
        const simd = join(dist, 'tfjs-backend-wasm-simd.wasm');
        try {
          wasm.setWasmPaths({
            'tfjs-backend-wasm.wasm': join(dist, 'tfjs-backend-wasm.wasm'),
            'tfjs-backend-wasm-simd.wasm': simd,
            'tfjs-backend-wasm-threaded-simd.wasm': simd,
          });
        } catch {
          // a previous initialisation attempt aborted; keep the package's own paths
        }
      }
    }
    registerWasmKernels();
    if (!(await tf.setBackend('wasm'))) return { ok: false, reason: 'the wasm backend failed to initialise' };
  } catch (e) {
    return { ok: false, reason: reasonOf(e) };
  }
  const simd = Boolean(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'));
  const threads = Math.max(1, wasm.getThreadsCount());
  return { ok: true, info: { name: 'wasm', package: WASM, gpu: false, threads, simd } };
}

async function tryCpu(): Promise<Attempt> {
  try {
    await import('@tensorflow/tfjs-backend-cpu');
    if (!(await tf.setBackend('cpu'))) return { ok: false, reason: 'the cpu backend failed to initialise' };
  } catch (e) {
    return { ok: false, reason: reasonOf(e) };
  }
  // silence the cpu backend's "Hi, looks like you are running TensorFlow.js in Node.js" banner
  (tf.backend() as { firstUse?: boolean }).firstUse = false;
  return { ok: true, info: { name: 'cpu', package: CPU, gpu: false, threads: 1 } };
}

function describe(info: BackendInfo): string {
  const t = `${info.threads} thread${info.threads === 1 ? '' : 's'}`;
  switch (info.name) {
    case 'tensorflow':
      return `mclip: backend tensorflow (${info.package}, ${info.gpu ? 'GPU' : 'CPU'}, ${t})`;
    case 'wasm':
      return `mclip: backend wasm (${info.simd ? 'SIMD' : 'no SIMD'}, ${t})`;
    default:
      return `mclip: backend cpu (pure JS, slow)`;
  }
}

const INSTALL_HINT: Record<string, string> = {
  [NODE_GPU]: `install it with 'npm install ${NODE_GPU}' (needs CUDA and network access to download libtensorflow)`,
  [NODE_CPU]: `install it with 'npm install ${NODE_CPU}' (needs network access to download libtensorflow)`,
};

function failure(choice: BackendChoice, pkg: string, reason: string): MclipError {
  const hint = INSTALL_HINT[pkg] ? `; ${INSTALL_HINT[pkg]} or use --backend wasm` : '';
  return new MclipError(`backend '${choice}' requested but ${pkg} could not be loaded: ${reason}${hint}`);
}

async function select(choice: BackendChoice, threads: number | undefined): Promise<BackendInfo> {
  switch (choice) {
    case 'tfjs-node-gpu':
    case 'tfjs-node': {
      const pkg = choice === 'tfjs-node-gpu' ? NODE_GPU : NODE_CPU;
      const r = await tryTfjsNode(pkg, threads);
      if (!r.ok) throw failure(choice, pkg, r.reason);
      return r.info;
    }
    case 'tensorflow': {
      const g = await tryTfjsNode(NODE_GPU, threads);
      if (g.ok) return g.info;
      const c = await tryTfjsNode(NODE_CPU, threads);
      if (c.ok) return c.info;
      throw new MclipError(
        `backend 'tensorflow' requested but neither ${NODE_GPU} (${g.reason}) nor ${NODE_CPU} (${c.reason}) could be loaded; ` +
          `${INSTALL_HINT[NODE_CPU]} or use --backend wasm`,
      );
    }
    case 'wasm': {
      const r = await tryWasm();
      if (!r.ok) throw failure(choice, WASM, r.reason);
      return r.info;
    }
    case 'cpu': {
      const r = await tryCpu();
      if (!r.ok) throw failure(choice, CPU, r.reason);
      return r.info;
    }
    case 'auto': {
      const reasons: string[] = [];
      for (const attempt of [() => tryTfjsNode(NODE_GPU, threads), () => tryTfjsNode(NODE_CPU, threads), tryWasm, tryCpu]) {
        const r = await attempt();
        if (r.ok) return reasons.length >= 2 && r.info.name !== 'tensorflow' ? { ...r.info, nativeUnavailable: reasons[1] } : r.info;
        reasons.push(r.reason);
      }
      throw new MclipError(`no tfjs backend could be initialised: ${reasons.join('; ')}`);
    }
  }
}

let current: { choice: BackendChoice; info: BackendInfo } | null = null;
let queue: Promise<unknown> = Promise.resolve();

/**
 * Picks and initialises the tfjs backend (see the file comment), prints the choice to stderr
 * (unless quiet) and registers gradient functions (unless `gradients: false`). Idempotent: a repeat
 * call with the same choice returns the same info without printing (re-activating the backend if
 * something switched away from it); a different choice switches backends.
 */
export function initBackend(opts: InitBackendOptions = {}): Promise<BackendInfo> {
  const run = async (): Promise<BackendInfo> => {
    const choice =
      opts.backend != null
        ? parseBackendChoice(opts.backend, '--backend')
        : parseBackendChoice(process.env.MCLIP_BACKEND, 'MCLIP_BACKEND');
    let info: BackendInfo;
    if (current != null && current.choice === choice) {
      info = current.info;
      if (tf.getBackend() !== info.name && !(await tf.setBackend(info.name))) {
        throw new MclipError(`backend '${info.name}' could not be re-activated`);
      }
    } else {
      info = await select(choice, opts.threads);
      current = { choice, info };
      if (!opts.quiet) {
        const why = info.nativeUnavailable;
        process.stderr.write(describe(info) + (why ? `: ${nativeReason(why)}` : '') + '\n');
        if (why && firstTime(`native-hint:${nativeReason(why)}`)) process.stderr.write(`mclip: ${nativeHint(why)} (this hint is shown once)\n`);
      }
    }
    if (opts.gradients !== false && !gradientsRegistered()) {
      try {
        await registerGradients();
      } catch (e) {
        throw new MclipError(`could not register tfjs gradient functions: ${reasonOf(e)}`, { cause: e });
      }
    }
    return { ...info };
  };
  const p = queue.then(run, run);
  queue = p.catch(() => undefined);
  return p;
}

/** The backend chosen by the last successful initBackend call, or null. */
export function currentBackend(): BackendInfo | null {
  return current == null ? null : { ...current.info };
}
