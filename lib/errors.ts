/**
 * Kiln's one error type. Every libtorch failure, every invalid argument and every misuse
 * (a disposed tensor, an unavailable device) surfaces as a `KilnError` with a short `code`.
 */

/** Error codes a `KilnError` can carry. */
export type KilnErrorCode =
  | 'INVALID_ARGUMENT' // a value of the wrong type, shape, dtype or range (checked in TS)
  | 'DISPOSED' // the tensor (or module) was disposed
  | 'TORCH' // libtorch rejected the operation (message from libtorch, no C++ backtrace)
  | 'CUDA_UNAVAILABLE' // a CUDA device was asked for but none is usable
  | 'OUT_OF_MEMORY'
  | 'NATIVE' // any other native failure
  | 'IO' // files: missing, unreadable, corrupt
  | 'LOAD'; // the native addon could not be loaded

/** The error Kiln throws. `code` says which kind of failure it is. */
export class KilnError extends Error {
  readonly code: KilnErrorCode;
  constructor(message: string, code: KilnErrorCode | string = 'NATIVE') {
    super(message);
    this.name = 'KilnError';
    this.code = code as KilnErrorCode;
  }
}

/** A short description of a value for error messages: its type and, where small, its value. */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'number') return Number.isNaN(value) ? 'NaN' : `number ${value}`;
  if (typeof value === 'string') return `string '${value.length > 40 ? value.slice(0, 40) + '…' : value}'`;
  if (typeof value === 'boolean' || typeof value === 'bigint') return `${typeof value} ${String(value)}`;
  if (Array.isArray(value)) return `array of length ${value.length}`;
  if (ArrayBuffer.isView(value)) return `${value.constructor.name} of length ${(value as unknown as { length: number }).length}`;
  if (typeof value === 'function') return 'function';
  const ctor = (value as object).constructor;
  return ctor && ctor.name && ctor.name !== 'Object' ? `${ctor.name} object` : 'object';
}

/** The error for a bad argument: names the parameter, what was expected and what came. */
export function invalidParameterError(name: string, expected: string, actual: unknown): KilnError {
  return new KilnError(`${name}: expected ${expected}, got ${describe(actual)}`, 'INVALID_ARGUMENT');
}
