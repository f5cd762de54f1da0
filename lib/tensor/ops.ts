/** Free functions over several tensors: cat, stack, where, and functional forms of methods. */
import { N } from '../native';
import { invalidParameterError } from '../errors';
import { Tensor, idOf } from './tensor';
import { full } from './creation';

function ids(ts: unknown, name: string): number[] {
  if (!Array.isArray(ts) || ts.length === 0) throw invalidParameterError(name, 'a non-empty array of Tensors', ts);
  return ts.map((t, i) => idOf(t, `${name}[${i}]`));
}

/** Concatenates along an existing dimension. */
export function cat(tensors: Tensor[], dim = 0): Tensor {
  return new Tensor(N.cat(ids(tensors, 'tensors'), dim));
}
/** Half-precision values (float16, bfloat16) as float32; other tensors as they are (the same handle). */
export function atLeastFloat32(t: Tensor): Tensor {
  return t.dtype === 'float16' || t.dtype === 'bfloat16' ? t.float() : t;
}
/** Stacks along a new dimension. */
export function stack(tensors: Tensor[], dim = 0): Tensor {
  return new Tensor(N.stack(ids(tensors, 'tensors'), dim));
}
/** Elementwise `condition ? a : b`; a and b may be numbers. */
export function where(condition: Tensor, a: Tensor | number, b: Tensor | number): Tensor {
  const c = idOf(condition, 'condition');
  const ref = a instanceof Tensor ? a : b instanceof Tensor ? b : null;
  const opts = ref ? { dtype: ref.dtype, device: ref.device } : { device: condition.device };
  const ta = typeof a === 'number' ? full([], a, opts) : a;
  const tb = typeof b === 'number' ? full([], b, opts) : b;
  try {
    return new Tensor(N.where(c, idOf(ta, 'a'), idOf(tb, 'b')));
  } finally {
    if (ta !== a) ta.dispose();
    if (tb !== b) tb.dispose();
  }
}
/** Matrix product (batched, broadcasting), like `torch.matmul`. */
export function matmul(a: Tensor, b: Tensor): Tensor {
  if (!(a instanceof Tensor)) throw invalidParameterError('a', 'a Tensor', a);
  return a.matmul(b);
}
