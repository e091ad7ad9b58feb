/** Registers the ONNX emitters of the built-in layers and the softmax attention kernel (import for the side effect). */
import './basic.js';
import './mci.js';
import './transformer.js';
import './softmax.js';
