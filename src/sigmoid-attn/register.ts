/**
 * Registers sigmoid attention with the core (import for its effect, once): the kernel under 'sigmoid'
 * (`registerAttentionKernel`), its ONNX form (`registerAttentionEmitter`) and its MACs (`registerAttentionCost`).
 */
import { registerAttentionKernel } from '../base/nn/attention.js';
import { sigmoidKernel } from './kernel.js';
import './onnx.js';
import './cost.js';

registerAttentionKernel(sigmoidKernel);
