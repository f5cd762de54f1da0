/** Data types and devices: names, native codes, TypedArray mapping and validation. */
import { KilnError, invalidParameterError } from '../errors';

/** The dtypes Kiln supports (PyTorch's names). */
export type DType = 'float32' | 'float64' | 'float16' | 'bfloat16' | 'int64' | 'int32' | 'uint8' | 'bool';
/** A device string: `'cpu'`, `'cuda'` or `'cuda:N'`. */
export type Device = 'cpu' | 'cuda' | `cuda:${number}`;

/** libtorch ScalarType codes (stable across libtorch versions). */
export const DTYPE_CODE: Record<DType, number> = {
  uint8: 0, int32: 3, int64: 4, float16: 5, float32: 6, float64: 7, bool: 11, bfloat16: 15,
};
const CODE_DTYPE: Record<number, DType> = Object.fromEntries(
  Object.entries(DTYPE_CODE).map(([k, v]) => [v, k as DType]),
) as Record<number, DType>;

/** Bytes per element of each dtype. */
export const DTYPE_BYTES: Record<DType, number> = { float32: 4, float64: 8, float16: 2, bfloat16: 2, int64: 8, int32: 4, uint8: 1, bool: 1 };
export const DTYPES = Object.keys(DTYPE_CODE) as DType[];

/** The TypedArray that holds a tensor's data when read back. */
export type TypedArray = Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array;

export function dtypeFromCode(code: number): DType {
  const d = CODE_DTYPE[code];
  if (!d) throw new KilnError(`tensor has a dtype Kiln does not support (libtorch ScalarType ${code})`, 'INVALID_ARGUMENT');
  return d;
}

export function isDType(v: unknown): v is DType {
  return typeof v === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_CODE, v);
}

/** Validates a dtype argument and returns its native code. */
export function dtypeCode(v: unknown, name = 'dtype'): number {
  if (!isDType(v)) throw invalidParameterError(name, `one of ${DTYPES.join(', ')}`, v);
  return DTYPE_CODE[v];
}

export function isFloating(d: DType): boolean {
  return d === 'float32' || d === 'float64' || d === 'float16' || d === 'bfloat16';
}

/** The dtype whose data a readback returns (half types are read back as float32). */
export function readbackArray(d: DType, buf: ArrayBuffer): TypedArray {
  // an empty tensor's buffer may come back detached (no backing store): view a fresh empty one
  if (buf.byteLength === 0) buf = new ArrayBuffer(0);
  switch (d) {
    case 'float32': case 'float16': case 'bfloat16': return new Float32Array(buf);
    case 'float64': return new Float64Array(buf);
    case 'int32': return new Int32Array(buf);
    case 'int64': return new BigInt64Array(buf);
    case 'uint8': case 'bool': return new Uint8Array(buf);
  }
}

const DEVICE_RE = /^(cpu|cuda(:\d+)?)$/;

/** Validates a device string (format only; the native side checks CUDA availability). */
export function checkDevice(v: unknown, name = 'device'): Device {
  if (typeof v !== 'string' || !DEVICE_RE.test(v)) throw invalidParameterError(name, "'cpu', 'cuda' or 'cuda:N'", v);
  return v as Device;
}
