/**
 * One bench/throughput helper process: times the `mobileclip_tiny` train step on one thread at the given
 * batch (`node dist/bench/throughput-solo.js BATCH`) and prints the timing as one JSON line. Two of these
 * started together measure what the machine gives two independent single-thread trainers at once — the
 * ceiling for two data-parallel ranks, which also share memory bandwidth and caches.
 */
import { initBackend } from '../src/base/backend/index.js';
import { timeTrainStep } from './throughput-train.js';

const batch = Number(process.argv[2] ?? 16);
await initBackend({ backend: 'wasm', quiet: true });
console.log(JSON.stringify(await timeTrainStep(1, { batch })));
