/**
 * The project's single entry to TensorFlow.js: tfjs-core with the chained tensor methods
 * (`x.add(y)`, `x.reshape(...)`) registered on the Tensor class.
 *
 * tfjs-core's CommonJS bundle (what Node loads) does not register chained ops, and its ESM
 * files cannot be loaded by Node directly, so we register them here exactly as tfjs does
 * (`Tensor.prototype.op = function (...args) { return op(this, ...args); }`); the type
 * declarations come from tfjs-core's own chained-op typings.
 */
import * as tfc from '@tensorflow/tfjs-core';

export type {} from '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops.js';
export * from '@tensorflow/tfjs-core';

/** Chained methods that forward to the op of the same name with `this` as first argument. */
const SAME_NAME: readonly string[] = [
  'abs', 'acos', 'acosh', 'add', 'all', 'any', 'argMax', 'argMin', 'asin', 'asinh', 'atan', 'atan2',
  'atanh', 'batchToSpaceND', 'batchNorm', 'broadcastTo', 'cast', 'ceil', 'clipByValue', 'conv1d',
  'conv2d', 'cos', 'cosh', 'cumprod', 'cumsum', 'depthToSpace', 'div', 'divNoNan', 'dot', 'elu',
  'equal', 'erf', 'euclideanNorm', 'exp', 'expandDims', 'expm1', 'fft', 'floor', 'floorDiv',
  'gather', 'greater', 'greaterEqual', 'ifft', 'irfft', 'isFinite', 'isInf', 'isNaN', 'leakyRelu',
  'less', 'lessEqual', 'log', 'log1p', 'logSigmoid', 'logSoftmax', 'logSumExp', 'logicalAnd',
  'logicalNot', 'logicalOr', 'logicalXor', 'matMul', 'max', 'maximum', 'mean', 'min', 'minimum',
  'mirrorPad', 'mod', 'mul', 'neg', 'norm', 'notEqual', 'oneHot', 'onesLike', 'pad', 'pool', 'pow',
  'prelu', 'prod', 'reciprocal', 'relu', 'relu6', 'reshape', 'reverse', 'rfft', 'round', 'rsqrt',
  'selu', 'sigmoid', 'sign', 'sin', 'sinh', 'slice', 'softmax', 'softplus', 'spaceToBatchND',
  'split', 'sqrt', 'square', 'squaredDifference', 'squeeze', 'step', 'stridedSlice', 'sub', 'sum',
  'tan', 'tanh', 'tile', 'topk', 'transpose', 'unique', 'unstack', 'zerosLike',
];

type AnyFn = (...args: unknown[]) => unknown;

function register(): void {
  const proto = (tfc.Tensor as unknown as { prototype: Record<string, unknown> }).prototype;
  if (proto['__mclipChained'] === true) return;
  const ops = tfc as unknown as Record<string, AnyFn | undefined>;
  for (const name of SAME_NAME) {
    const op = ops[name];
    if (typeof op !== 'function' || typeof proto[name] === 'function') continue;
    proto[name] = function (this: tfc.Tensor, ...args: unknown[]) {
      this.throwIfDisposed();
      return op(this, ...args);
    };
  }
  const def = (name: string, fn: (this: tfc.Tensor, ...args: never[]) => unknown) => {
    if (typeof proto[name] !== 'function') proto[name] = fn;
  };
  def('flatten', function () {
    return tfc.reshape(this, [this.size]);
  });
  def('as1D', function () {
    return tfc.reshape(this, [this.size]);
  });
  def('asScalar', function () {
    return tfc.reshape(this, []);
  });
  def('reshapeAs', function (x: tfc.Tensor) {
    return tfc.reshape(this, x.shape);
  });
  def('asType', function (dtype: tfc.DataType) {
    return tfc.cast(this, dtype);
  });
  def('toBool', function () {
    return tfc.cast(this, 'bool');
  });
  def('toFloat', function () {
    return tfc.cast(this, 'float32');
  });
  def('toInt', function () {
    return tfc.cast(this, 'int32');
  });
  def('concat', function (x: tfc.Tensor | tfc.Tensor[], axis?: number) {
    return tfc.concat([this, ...(x instanceof tfc.Tensor ? [x] : x)], axis);
  });
  def('stack', function (x: tfc.Tensor | tfc.Tensor[], axis?: number) {
    return tfc.stack([this, ...(x instanceof tfc.Tensor ? [x] : x)], axis);
  });
  def('where', function (condition: tfc.Tensor, x: tfc.Tensor) {
    return tfc.where(condition, this, x);
  });
  proto['__mclipChained'] = true;
}

register();

/** Numbers, typed arrays and arrays of them: what a scope returns when it reads tensors back; no tensor inside. */
function plainData(x: unknown): boolean {
  return typeof x === 'number' || ArrayBuffer.isView(x) || (Array.isArray(x) && x.every(plainData));
}

/**
 * tfjs's `tidy`, except that a result that is plain data (typed arrays, numbers, arrays of them — what
 * `dataSync()` / `arraySync()` at the end of a scope return) is handed back without being searched for
 * tensors. tfjs looks for the tensors to keep in whatever the scope returns, key by key (`for…in` and a Set of
 * the values seen), about 0.4 µs per element: ~0.16 s for the 80×69×69 similarity matrix a ToMe layer reads
 * back. Plain data holds no tensors, so skipping the search changes nothing else: every tensor made in the
 * scope is still disposed.
 */
export function tidy<T extends tfc.TensorContainer>(nameOrFn: string | (() => T), fn?: () => T): T {
  const scope = typeof nameOrFn === 'function' ? nameOrFn : fn;
  if (typeof scope !== 'function') return tfc.tidy(nameOrFn, fn); // tfjs reports the misuse
  let data: { value: T } | undefined;
  const inner = (): T | void => {
    const r = scope();
    if (!plainData(r)) return r;
    data = { value: r };
  };
  const out = typeof nameOrFn === 'string' ? tfc.tidy(nameOrFn, inner) : tfc.tidy(inner);
  return data ? data.value : (out as T);
}
