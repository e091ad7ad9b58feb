export * from './shards.js';
export * from './sample.js';
export * from './build.js';
export * from './emoji.js';
export * from './fashion-mnist.js';
export * from './augment.js';
export * from './npz.js';
export * from './datacompdr.js';
