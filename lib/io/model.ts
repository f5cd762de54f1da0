/** Saving and loading whole models: weights as safetensors plus the zoo architecture in metadata. */
import { KilnError, invalidParameterError } from '../errors';
import { Module } from '../nn/module';
import { models, architectureOf, Architecture } from '../models';
import { saveSafetensors, loadSafetensors, loadSafetensorsAsync, SafetensorsFile } from './safetensors';

const ARCH_KEY = 'kiln.architecture';

/**
 * Writes `model`'s state dict to a safetensors file. Zoo models also record their
 * architecture so `loadModel` can rebuild them; `metadata` adds string entries (e.g. class names).
 */
export function saveModel(file: string, model: Module, metadata: Record<string, string> = {}): void {
  if (!(model instanceof Module)) throw invalidParameterError('model', 'a Module', model);
  const arch = architectureOf(model);
  const meta: Record<string, string> = { format: 'pt', ...metadata };
  if (arch) meta[ARCH_KEY] = JSON.stringify(arch);
  saveSafetensors(file, model.stateDict(), meta);
}

/** A model rebuilt from a file written by `saveModel`, with its metadata. */
export function loadModel(file: string): { model: Module; metadata: Record<string, string> } {
  return rebuild(file, loadSafetensors(file));
}

/** `loadModel` with the file read off the main thread (for servers loading models while they serve). */
export async function loadModelAsync(file: string): Promise<{ model: Module; metadata: Record<string, string> }> {
  return rebuild(file, await loadSafetensorsAsync(file));
}

/** The zoo model a `saveModel` file's metadata names, with the file's weights; the file's tensors are freed. */
function rebuild(file: string, { tensors, metadata }: SafetensorsFile): { model: Module; metadata: Record<string, string> } {
  try {
    const raw = metadata[ARCH_KEY];
    if (!raw) throw new KilnError(`${file} has no '${ARCH_KEY}' metadata: build the model yourself and call model.loadStateDict(loadSafetensors(file).tensors)`, 'IO');
    let arch: Architecture;
    try {
      arch = JSON.parse(raw) as Architecture;
    } catch {
      throw new KilnError(`${file}: '${ARCH_KEY}' metadata is not valid JSON`, 'IO');
    }
    const model = models.create(arch.name, arch.options);
    model.loadStateDict(tensors);
    return { model, metadata };
  } finally {
    for (const t of tensors.values()) t.dispose();
  }
}

/** `kiln.save(path, model)`: `saveModel`. */
export const save = saveModel;
/** `kiln.load(path)`: the model a `saveModel` file describes (use `loadModel` for its metadata too). */
export function load(file: string): Module {
  return loadModel(file).model;
}
