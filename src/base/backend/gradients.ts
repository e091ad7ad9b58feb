/**
 * Gradient registration.
 *
 * `@tensorflow/tfjs-core`'s Node entry point (dist/tf-core.node.js) registers NO gradient functions:
 * they live in the package's ESM build (dist/gradients/*.js, dist/register_all_gradients.js), which
 * only the `@tensorflow/tfjs` / `@tensorflow/tfjs-node` bundles include. Without them every
 * `tf.grad` / optimizer step fails with "gradient function not found for <Kernel>".
 *
 * That ESM build uses extension-less relative imports and sits in a package without
 * "type": "module", so Node cannot load it as is. `registerGradients()` installs a tiny module
 * resolve hook (scoped to that dist folder: adds ".js" / "/index.js", forces ESM) and imports
 * dist/register_all_gradients.js. The modules it loads share tfjs-core's global engine and kernel /
 * gradient registries (tfjs keeps them on globalThis), so the gradients land in the same registry
 * that the `@tensorflow/tfjs-core` import uses. Takes ~0.8 s once; a no-op when gradients are
 * already registered (e.g. by tfjs-node).
 */
import * as tf from '@tensorflow/tfjs-core';
import { createRequire, register } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';

/** Kernels whose gradients must exist afterwards (a sample across the gradient files). */
const PROBE_KERNELS = ['Conv2D', 'DepthwiseConv2dNative', 'BatchMatMul', 'GatherV2', 'Sum', 'Erf', 'Softmax'];

export function gradientsRegistered(): boolean {
  return PROBE_KERNELS.every((k) => tf.getGradient(k) != null);
}

function hookSource(distUrl: string): string {
  const dist = JSON.stringify(distUrl);
  return `
const DIST = ${dist};
const inDist = (u) => typeof u === 'string' && u.startsWith(DIST) && !/\\/tf-core[^/]*\\.js$/.test(u);
export async function resolve(specifier, context, next) {
  if (inDist(context.parentURL) && (specifier.startsWith('./') || specifier.startsWith('../')) && !/\\.(m?js|json)$/.test(specifier)) {
    for (const suffix of ['.js', '/index.js']) {
      try {
        const r = await next(specifier + suffix, context);
        if (inDist(r.url)) return { ...r, format: 'module', shortCircuit: true };
        return r;
      } catch {}
    }
  }
  const r = await next(specifier, context);
  return inDist(r.url) && r.url.endsWith('.js') ? { ...r, format: 'module', shortCircuit: true } : r;
}
`;
}

let pending: Promise<void> | null = null;

/**
 * Makes sure tfjs' gradient functions are registered (see the file comment). Idempotent; throws an
 * Error saying why when they cannot be loaded.
 */
export function registerGradients(): Promise<void> {
  if (gradientsRegistered()) return Promise.resolve();
  pending ??= (async () => {
    const require = createRequire(import.meta.url);
    const coreMain = require.resolve('@tensorflow/tfjs-core'); // .../tfjs-core/dist/tf-core.node.js
    const dist = dirname(coreMain);
    const distUrl = pathToFileURL(dist).href + '/';
    register('data:text/javascript,' + encodeURIComponent(hookSource(distUrl)));
    const entry = pathToFileURL(join(dist, 'register_all_gradients.js')).href;
    await import(/* @vite-ignore */ entry);
    if (!gradientsRegistered()) {
      throw new Error(`loaded ${entry} but the gradients are still missing (a second, separate tfjs-core engine?)`);
    }
  })().catch((e: unknown) => {
    pending = null;
    throw e;
  });
  return pending;
}
