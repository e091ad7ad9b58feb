import type { Module } from '../nn/module.js';
import { BatchNorm2d } from '../layers/batch-norm.js';

/**
 * Puts every BatchNorm of `model` in eval mode (running statistics, no updates) while the rest stays
 * as it is: training with frozen BatchNorm statistics. Call after `model.train()`.
 */
export function freezeBatchNorm(model: Module): void {
  for (const [, m] of model.namedModules()) if (m instanceof BatchNorm2d) m.training = false;
}
