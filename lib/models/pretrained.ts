/** Transfer learning: zoo models filled from torchvision `.pth` files, their head replaced, their backbone frozen. */
import { KilnError, invalidParameterError } from '../errors';
import { Module } from '../nn/module';
import { Linear } from '../nn/layers';
import { loadTorchStateDict } from '../io/torchsave';

/** Options of the ImageNet zoo models that take torchvision weights. */
export interface PretrainedOptions {
  /** a `torch.save(model.state_dict())` file of the same torchvision architecture (e.g. torchvision's downloaded `.pth`) */
  pretrained?: string;
}

/**
 * Builds a model with the weights of the torch.save file `file`: the file's class count is read from
 * `${head}.weight`, `build(thatCount)` is loaded strictly (every key, every shape), then, when
 * `numClasses` is given and differs, the head is replaced by a fresh `Linear` (PyTorch's default
 * initialisation) — what `model.fc = nn.Linear(…)` does in Python.
 */
export function withPretrained<M extends Module>(file: string, head: string, numClasses: number | undefined, build: (numClasses: number) => M): M {
  if (typeof file !== 'string' || !file) throw invalidParameterError('pretrained', 'a torch.save file path', file);
  const state = loadTorchStateDict(file);
  try {
    const w = state.get(`${head}.weight`);
    if (!w || w.ndim !== 2) throw new KilnError(`pretrained: ${file} has no 2-D '${head}.weight' (the classifier of this architecture); is it a state dict of this model?`, 'INVALID_ARGUMENT');
    const model = build(w.size(0));
    try {
      model.loadStateDict(state);
    } catch (e) {
      model.dispose();
      if (e instanceof KilnError) throw new KilnError(`pretrained: ${file} does not fit this architecture: ${e.message}`, e.code);
      throw e;
    }
    if (numClasses !== undefined && numClasses !== w.size(0)) replaceHead(model, head, numClasses);
    return model;
  } finally {
    for (const t of state.values()) t.dispose();
  }
}

/** Replaces the `Linear` at `head` by a fresh one with `numClasses` outputs (the old one is freed). */
export function replaceHead(model: Module, head: string, numClasses: number): Linear {
  const old = model.get(head);
  if (!(old instanceof Linear)) throw new KilnError(`replaceHead: '${head}' is a ${old.constructor.name}, not a Linear`, 'INVALID_ARGUMENT');
  const fresh = new Linear(old.inFeatures, numClasses, { bias: old.bias !== null });
  const device = old.weight.device;
  if (device !== 'cpu') fresh.to(device);
  if (old.weight.dtype !== fresh.weight.dtype) fresh.to(old.weight.dtype);
  model.set(head, fresh);
  old.dispose();
  return fresh;
}
