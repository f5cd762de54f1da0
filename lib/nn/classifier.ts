/**
 * What `kiln.explain` and `kiln.robust` take as a model: anything with `call(x)` returning
 * logits [N, classes] — a Module or a TorchScript model — with the checks they share.
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';

/** Anything with `call(x)` returning logits [N, classes] (a Module or a TorchScript model). */
export interface Classifier {
  call(x: Tensor): Tensor;
}

/** Checks a temperature the logits are divided by (calibration, distillation): a finite number > 0. */
export function checkTemperature(t: unknown, name = 'temperature'): number {
  if (typeof t !== 'number' || !Number.isFinite(t) || t <= 0) throw invalidParameterError(name, 'a finite number > 0 (the logits are divided by it)', t);
  return t;
}

/** Checks that `model` can be called; returns it typed. `name` prefixes the error. */
export function checkClassifier(model: unknown, name = 'model'): Classifier {
  if (!model || typeof (model as Classifier).call !== 'function') throw invalidParameterError(name, 'a Module (or anything with call(x) returning logits)', model);
  return model as Classifier;
}

/** Checks a model output: logits [n, classes] with every target class (up to `maxTarget`) present. */
export function checkLogits(out: unknown, n: number, maxTarget?: number): Tensor {
  if (!(out instanceof Tensor)) throw new KilnError(`the model must return a Tensor of logits [N, classes], got ${typeof out}`, 'INVALID_ARGUMENT');
  if (out.ndim !== 2 || out.size(0) !== n)
    throw new KilnError(`the model must return logits [N, classes] with N = ${n}, got shape [${out.shape.join(', ')}]`, 'INVALID_ARGUMENT');
  if (maxTarget !== undefined && maxTarget >= out.size(1))
    throw new KilnError(`target class ${maxTarget} is out of range: the model has ${out.size(1)} classes`, 'INVALID_ARGUMENT');
  return out;
}

/** The model's logits for `x`, checked (see `checkLogits`). */
export function logits(model: Classifier, x: Tensor, maxTarget?: number): Tensor {
  return checkLogits(model.call(x), x.size(0), maxTarget);
}
