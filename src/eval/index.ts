/** Evaluation: zero-shot classification, retrieval, cost (params / MACs), latency, report. */
export * from './templates.js';
export * from './embed.js';
export * from './zero-shot.js';
export * from './retrieval.js';
export * from './cost.js';
export * from './latency.js';
export * from './baselines.js';
export * from './report.js';
export * from './table.js';
export * from './plot.js';
export * from './evaluate.js';
