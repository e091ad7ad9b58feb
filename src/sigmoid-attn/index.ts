/** Sigmoid attention (methods.md §5): importing this module registers the kernel, its ONNX form and its MACs. */
import './register.js';

export { SIGMOID_KERNEL, BIAS_PARAM, sigmoidBias, biasOf, keySizes, sigmoidKernel } from './kernel.js';
export { sigmoidAttentionMacs } from './cost.js';
export { withSigmoidAttention, textKeys, mciKeys, vitKeys, type SigmoidOptions } from './config.js';
export { switchToSigmoid } from './switch.js';
