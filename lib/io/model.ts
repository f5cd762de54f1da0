/** Saving and loading whole models: weights as safetensors plus the zoo architecture in metadata. */
import { KilnError, invalidParameterError } from '../errors';
import { Module } from '../nn/module';
import { Tensor } from '../tensor/tensor';
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
    const model = models.create(...savedArchitecture(file, arch, tensors));
    model.loadStateDict(tensors);
    return { model, metadata };
  } finally {
    for (const t of tensors.values()) t.dispose();
  }
}

/**
 * The zoo name and options a file's metadata gives, checked before anything is built: an object with a string name
 * and plain options, no `pretrained` (the weights are the file's own; a file must not name other files to read), and
 * no integer option larger than every dimension of the file's tensors (numClasses, widths and depths show up in the
 * weights' shapes; a metadata edit asking for 4 million classes would otherwise allocate gigabytes first).
 */
function savedArchitecture(file: string, arch: unknown, tensors: Map<string, Tensor>): [string, Record<string, unknown>] {
  const bad = (why: string) => new KilnError(`${file}: '${ARCH_KEY}' metadata ${why}`, 'IO');
  if (arch === null || typeof arch !== 'object' || Array.isArray(arch)) throw bad('is not an object');
  const { name, options = {} } = arch as { name?: unknown; options?: unknown };
  if (typeof name !== 'string' || !models.names.includes(name)) throw bad(`names no zoo model (${JSON.stringify(name)})`);
  if (options === null || typeof options !== 'object' || Array.isArray(options)) throw bad('has options that are not an object');
  const opts = options as Record<string, unknown>;
  if ('pretrained' in opts) throw bad('names pretrained weights: a saved model carries its own');
  let largest = 1;
  for (const t of tensors.values()) for (const d of t.shape) largest = Math.max(largest, d);
  for (const [k, v] of Object.entries(opts))
    if (typeof v === 'number' && Number.isInteger(v) && v > largest) throw bad(`asks for ${k} ${v}, more than any dimension of the file's weights (${largest})`);
  return [name, opts];
}

/** `kiln.save(path, model)`: `saveModel`. */
export const save = saveModel;
/** `kiln.load(path)`: the model a `saveModel` file describes (use `loadModel` for its metadata too). */
export function load(file: string): Module {
  return loadModel(file).model;
}
