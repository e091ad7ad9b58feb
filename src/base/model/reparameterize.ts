import type { Module } from '../nn/module.js';

/**
 * Folds every re-parameterisable branch of `model` into its inference conv, in place
 * (the official `reparameterize_model`; methods.md §1.7). Parents are visited before their
 * children, and each module's fusion reads its own branches whatever state they are in, so
 * the result does not depend on the order. The model must be in eval mode (running statistics).
 */
export function reparameterize<M extends Module>(model: M): M {
  model.eval();
  const visit = (m: Module): void => {
    m.reparameterize();
    for (const [, c] of m.children()) visit(c);
  };
  visit(model);
  return model;
}
