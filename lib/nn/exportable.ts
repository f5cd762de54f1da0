/**
 * What the model exporters (`kiln.jit.save`, `kiln.onnx.export`) share: the check that a model
 * has a native spec and no hooks, and the atomic write of the exported file.
 */
import * as fs from 'fs';
import * as path from 'path';
import { KilnError } from '../errors';
import { Module, ModuleSpec } from './module';

/** The deepest module without a native spec (the one whose TS forward blocks an export). */
function blocker(model: Module): [string, Module] {
  const all = model.namedModules();
  for (let i = all.length - 1; i >= 0; i--) if (all[i][1].toSpec() === null) return all[i];
  return all[0];
}

/**
 * The model's native spec, or a KilnError (INVALID_ARGUMENT, messages prefixed with `who`) naming
 * the module with forward hooks (an export would leave them out) or with a TS-defined forward.
 */
export function exportableSpec(model: Module, who: string, what: string): ModuleSpec {
  for (const [name, m] of model.namedModules())
    if ((m as unknown as { _hooks: unknown[] })._hooks.length)
      throw new KilnError(`${who}: module '${name || '(root)'}' has forward hooks, which ${what} would leave out; remove them first`, 'INVALID_ARGUMENT');
  const spec = model.toSpec();
  if (!spec) {
    const [name, m] = blocker(model);
    throw new KilnError(`${who}: module '${name || '(root)'}' (${m.constructor.name}) has a forward written in TypeScript, with no native spec to export; only models built from Kiln's layers and containers export`, 'INVALID_ARGUMENT');
  }
  return spec;
}

/**
 * Writes an exported model file atomically: `write(tmp)` fills a temporary sibling of `file`,
 * which is then renamed to `file` (removed if anything fails). `kind` names the format in IO errors.
 */
export function writeExportAtomic(file: string, kind: string, write: (tmp: string) => void): void {
  const dir = path.dirname(path.resolve(file));
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw new KilnError(`cannot write ${kind} file ${file}: ${(e as Error).message}`, 'IO');
  }
  if (fs.existsSync(file) && fs.statSync(file).isDirectory()) throw new KilnError(`cannot write ${kind} file ${file}: it is a directory`, 'IO');
  const tmp = `${file}.tmp-${process.pid}-${Date.now()}`;
  try {
    write(tmp);
    fs.renameSync(tmp, file);
  } finally {
    if (fs.existsSync(tmp)) fs.rmSync(tmp, { force: true });
  }
}
