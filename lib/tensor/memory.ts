/**
 * Tensor lifetime: `dispose()`, `tidy(fn)` scopes (sync and async), `keep`, and a GC
 * backstop (FinalizationRegistry) for tensors created outside any scope and never disposed.
 * Tensors created inside a scope are tracked by the scope only (cheaper than the registry);
 * what a scope returns moves to the enclosing scope, or to the registry at the top level.
 */
import { AsyncLocalStorage } from 'async_hooks';
import { N } from '../native';
import { invalidParameterError } from '../errors';

/** What memory tracking needs from a tensor. */
export interface Tracked {
  _id: number;
  _reg: boolean; // registered with the finalization registry
  _kept: boolean; // excluded from tidy
}

const registry = new FinalizationRegistry<number>((id) => {
  try {
    N.free(id);
  } catch {
    // nothing to free: a finalizer must not throw (it would end the process)
  }
});

type Scope = Tracked[];
let syncScope: Scope | null = null;
let asyncScopes = 0;
let als: AsyncLocalStorage<Scope> | null = null;

/*
 * Registering with the FinalizationRegistry costs ~0.2–0.4 µs per tensor — as much as the op
 * itself. Most top-level tensors are disposed right after use, so new ones wait in a nursery
 * (a plain array) and only those still alive when it is flushed — at the end of the current
 * macrotask, or every NURSERY_MAX tensors — are registered.
 */
const NURSERY_MAX = 1024;
const nursery: Tracked[] = [];
let flushPending = false;

function flushNursery(): void {
  flushPending = false;
  for (const t of nursery)
    if (t._id >= 0 && !t._reg) {
      registry.register(t, t._id, t);
      t._reg = true;
    }
  nursery.length = 0;
}

/** Called for every new tensor handle. */
export function track(t: Tracked): void {
  const scope = syncScope ?? (asyncScopes > 0 ? als!.getStore() : undefined);
  if (scope) {
    scope.push(t);
    return;
  }
  nursery.push(t);
  if (nursery.length >= NURSERY_MAX) flushNursery();
  else if (!flushPending) {
    flushPending = true;
    setImmediate(flushNursery).unref();
  }
}

/** Frees a tensor's native memory now (idempotent). */
export function release(t: Tracked): void {
  if (t._id < 0) return;
  N.free(t._id);
  if (t._reg) {
    registry.unregister(t);
    t._reg = false;
  }
  t._id = -1;
}

function collect(value: unknown, out: Set<Tracked>, depth = 0): void {
  if (value === null || typeof value !== 'object' || depth > 4) return;
  if ('_id' in (value as object) && '_kept' in (value as object)) {
    out.add(value as Tracked);
    return;
  }
  if (Array.isArray(value)) for (const v of value) collect(v, out, depth + 1);
  else if (Object.getPrototypeOf(value) === Object.prototype || value instanceof Map)
    for (const v of value instanceof Map ? value.values() : Object.values(value)) collect(v, out, depth + 1);
}

/** Ends a scope: frees what it tracked except `result`'s tensors and kept ones, which move outwards. */
function close(scope: Scope, result: unknown): void {
  const keep = new Set<Tracked>();
  collect(result, keep);
  for (const t of scope) {
    if (t._id < 0) continue;
    if (keep.has(t) || t._kept) track(t);
    else release(t);
  }
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && typeof v === 'object' && typeof (v as { then?: unknown }).then === 'function';
}

/**
 * Runs `fn` and frees every tensor created inside it except those it returns (a tensor, or
 * tensors inside returned arrays/objects) and those passed to `keep`. With an async `fn`,
 * returns a Promise and tracks tensors across its awaits.
 */
export function tidy<T>(fn: () => T): T {
  if (typeof fn !== 'function') throw invalidParameterError('tidy(fn)', 'a function', fn);
  if (fn.constructor.name === 'AsyncFunction') return tidyAsync(fn as () => Promise<unknown>) as T;
  const scope: Scope = [];
  const outer = syncScope;
  syncScope = scope;
  let result: T;
  try {
    result = fn();
  } catch (e) {
    syncScope = outer;
    close(scope, undefined);
    throw e;
  }
  syncScope = outer;
  if (isThenable(result)) {
    // A plain function returning a promise: tensors created before its first await were
    // tracked; free them once it settles.
    return Promise.resolve(result).then(
      (v) => { close(scope, v); return v; },
      (e) => { close(scope, undefined); throw e; },
    ) as T;
  }
  close(scope, result);
  return result;
}

/** `tidy` for async functions: tensors created across awaits are tracked (AsyncLocalStorage). */
export async function tidyAsync<T>(fn: () => Promise<T>): Promise<T> {
  als ??= new AsyncLocalStorage<Scope>();
  const scope: Scope = [];
  const outer = syncScope;
  asyncScopes++;
  let result: T;
  try {
    syncScope = null; // inside, the async store decides
    const p = als.run(scope, fn);
    syncScope = outer;
    result = await p;
  } catch (e) {
    syncScope = outer;
    close(scope, undefined);
    throw e;
  } finally {
    asyncScopes--;
  }
  close(scope, result);
  return result;
}

/** Marks tensors so that no enclosing `tidy` frees them; returns the argument. */
export function keep<T extends Tracked | Tracked[]>(t: T): T {
  for (const x of Array.isArray(t) ? t : [t]) {
    if (x === null || typeof x !== 'object') throw invalidParameterError('keep', 'a tensor or an array of tensors', x);
    x._kept = true;
  }
  return t;
}

/** `keep` for every tensor inside a value (a tensor, or arrays/objects/Maps of them, as `tidy` returns); returns those tensors. */
export function keepAll(value: unknown): Tracked[] {
  const found = new Set<Tracked>();
  collect(value, found);
  for (const t of found) t._kept = true;
  return [...found];
}

/** Memory held by live tensors. */
export interface MemoryInfo {
  /** live tensor handles (views count separately) */
  numTensors: number;
  /** bytes of distinct storages on the CPU */
  cpuBytes: number;
  /** bytes of distinct storages on CUDA devices */
  cudaBytes: number;
}

/** How many tensors are alive and how many bytes they hold, per device. */
export function memory(): MemoryInfo {
  const [numTensors, cpuBytes, cudaBytes] = N.memory();
  return { numTensors, cpuBytes, cudaBytes };
}
