/**
 * Knowledge distillation (Hinton, Vinyals & Dean 2015) as a training objective: a student learns from a trained
 * teacher's softened probabilities as well as from the labels,
 *   α·T²·KL(softmax(teacher(x)/T) ‖ softmax(student(x)/T)) + (1 − α)·loss(student(x), y),
 * the KL averaged over the batch (PyTorch's `kl_div(..., reduction='batchmean')`); T² keeps the soft term's gradients
 * on the scale of the hard one's as T changes. The teacher runs in eval mode without gradients.
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { atLeastFloat32 } from '../tensor/ops';
import { noGrad } from '../autograd';
import { Module, saveModes } from '../nn/module';
import { klDiv } from '../nn/functional';
import { Classifier, checkClassifier, checkTemperature } from '../nn/classifier';
import type { Objective } from './options';

/** Options of `distillation`. */
export interface DistillationOptions {
  /** the trained model to learn from: a Module, a TorchScript or optimised module — anything with `call(x)` giving logits [N, classes] on the batch's device */
  teacher: Classifier;
  /** softens both distributions (default 4) */
  temperature?: number;
  /** weight of the teacher's term; 1 − alpha weighs the trainer's loss on the labels (default 0.9) */
  alpha?: number;
}

/** A distillation objective, with what it was made with. */
export interface DistillationObjective extends Objective {
  readonly temperature: number;
  readonly alpha: number;
}

/**
 * The distillation objective for `new Trainer(student, { objective: distillation({ teacher }) })` (`kiln train
 * --teacher DIR`). The training `loss` logged is this objective; accuracy and the other metrics are the student's on
 * the labels, and validation measures the student alone (its loss is the trainer's loss on the labels). The teacher
 * must take the student's inputs. A Module teacher is put back in the modes it had; a TorchScript one stays in eval mode.
 */
export function distillation(options: DistillationOptions): DistillationObjective {
  if (options === null || typeof options !== 'object') throw invalidParameterError('distillation: options', 'an object with a teacher', options);
  const teacher = checkClassifier(options.teacher, 'distillation: teacher');
  const T = checkTemperature(options.temperature ?? 4, 'distillation: temperature');
  const alpha = options.alpha ?? 0.9;
  if (typeof alpha !== 'number' || !(alpha >= 0 && alpha <= 1)) throw invalidParameterError('distillation: alpha', 'a number in [0, 1]', options.alpha);
  const objective: Objective = ({ model, x, y, loss }) => {
    if (teacher === (model as unknown)) throw new KilnError('distillation: the teacher is the model being trained; give it a trained model of its own', 'INVALID_ARGUMENT');
    const soft = noGrad(() => {
      const restore = teacher instanceof Module ? saveModes(teacher) : null;
      (teacher as { eval?: () => unknown }).eval?.(); // a TorchScript teacher too (its earlier mode is not known to put back)
      try {
        let t: Tensor;
        try {
          t = teacher.call(x);
        } catch (e) {
          throw e instanceof KilnError ? new KilnError(`distillation: the teacher failed on the batch: ${e.message}`, e.code) : e;
        }
        if (!(t instanceof Tensor)) throw new KilnError(`distillation: the teacher must return logits [N, classes], got ${typeof t}`, 'INVALID_ARGUMENT');
        return atLeastFloat32(t).div(T).softmax(1); // t and the steps between: freed by the trainer's step scope
      } finally {
        restore?.();
      }
    });
    try {
      const logits = model.call(x);
      if (soft.ndim !== 2 || logits.ndim !== 2 || soft.size(0) !== logits.size(0) || soft.size(1) !== logits.size(1))
        throw new KilnError(`distillation: the teacher's logits [${soft.shape.join(', ')}] do not match the student's [${logits.shape.join(', ')}] (the same classes, in the same order)`, 'INVALID_ARGUMENT');
      const hard = alpha === 1 ? null : loss(logits, y);
      const kd = klDiv(atLeastFloat32(logits).div(T).logSoftmax(1), soft, { reduction: 'batchmean' }).mul(alpha * T * T);
      return { logits, loss: hard ? kd.add(hard.mul(1 - alpha)) : kd };
    } finally {
      soft.dispose();
    }
  };
  return Object.assign(objective, { temperature: T, alpha });
}
