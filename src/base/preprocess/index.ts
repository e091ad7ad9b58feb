export { preprocessImage, preprocessBatch, transformRgb, resizedSize, centerCropOffsets } from './transform.js';
export { decodeImage, rawToRgb, type ImageInput, type RawImage } from './image-decode.js';
export { resizeBilinearPillow, type U8Image } from './pillow-resize.js';
export { IDENTITY_PREPROCESS, OPENAI_MEAN, OPENAI_STD, isIdentityNormalisation, type PreprocessSpec } from './spec.js';
