/** Parameter initialisers (PyTorch's torch.nn.init, camelCase, in place, under noGrad). */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { tensor } from '../tensor/creation';
import { noGrad } from '../autograd';
import { tidy } from '../tensor/memory';

/** Nonlinearities for `calculateGain`. */
export type Nonlinearity = 'linear' | 'conv2d' | 'sigmoid' | 'tanh' | 'relu' | 'leaky_relu' | 'selu';

/** PyTorch's recommended gain for a nonlinearity. */
export function calculateGain(nonlinearity: Nonlinearity, param?: number): number {
  switch (nonlinearity) {
    case 'linear': case 'conv2d': case 'sigmoid': return 1;
    case 'tanh': return 5 / 3;
    case 'relu': return Math.SQRT2;
    case 'leaky_relu': { const s = param ?? 0.01; return Math.sqrt(2 / (1 + s * s)); }
    case 'selu': return 3 / 4;
    default: throw invalidParameterError('nonlinearity', 'linear, conv2d, sigmoid, tanh, relu, leaky_relu or selu', nonlinearity);
  }
}

/** [fanIn, fanOut] of a weight of shape [out, in, ...kernel]. */
export function fans(t: Tensor): [number, number] {
  const s = t.shape;
  if (s.length < 2) throw new KilnError(`fan in/out needs a tensor with at least 2 dims, got [${s.join(', ')}]`, 'INVALID_ARGUMENT');
  const rf = s.slice(2).reduce((a, b) => a * b, 1);
  return [s[1] * rf, s[0] * rf];
}

type Mode = 'fanIn' | 'fanOut';
interface KaimingOptions { a?: number; mode?: Mode; nonlinearity?: Nonlinearity }

function kaimingStd(t: Tensor, o: KaimingOptions): number {
  const [fi, fo] = fans(t);
  const fan = (o.mode ?? 'fanIn') === 'fanIn' ? fi : fo;
  return calculateGain(o.nonlinearity ?? 'leaky_relu', o.a ?? 0) / Math.sqrt(fan);
}

export function uniform_(t: Tensor, a = 0, b = 1): Tensor { return noGrad(() => t.uniform_(a, b)); }
export function normal_(t: Tensor, mean = 0, std = 1): Tensor { return noGrad(() => t.normal_(mean, std)); }
export function zeros_(t: Tensor): Tensor { return noGrad(() => t.zero_()); }
export function ones_(t: Tensor): Tensor { return noGrad(() => t.fill_(1)); }
export function constant_(t: Tensor, v: number): Tensor { return noGrad(() => t.fill_(v)); }

/** He initialisation, uniform: U(-b, b) with b = gain·sqrt(3/fan). */
export function kaimingUniform_(t: Tensor, o: KaimingOptions = {}): Tensor {
  const bound = Math.sqrt(3) * kaimingStd(t, o);
  return uniform_(t, -bound, bound);
}
/** He initialisation, normal: N(0, gain²/fan). */
export function kaimingNormal_(t: Tensor, o: KaimingOptions = {}): Tensor {
  return normal_(t, 0, kaimingStd(t, o));
}
/** Glorot initialisation, uniform. */
export function xavierUniform_(t: Tensor, gain = 1): Tensor {
  const [fi, fo] = fans(t);
  const a = gain * Math.sqrt(6 / (fi + fo));
  return uniform_(t, -a, a);
}
/** Glorot initialisation, normal. */
export function xavierNormal_(t: Tensor, gain = 1): Tensor {
  const [fi, fo] = fans(t);
  return normal_(t, 0, gain * Math.sqrt(2 / (fi + fo)));
}
/** Normal(mean, std) truncated to [a, b] (resampling out-of-range values). */
export function truncNormal_(t: Tensor, mean = 0, std = 1, a = -2, b = 2): Tensor {
  if (!(a < b)) throw invalidParameterError('truncNormal_(a, b)', 'a < b', [a, b]);
  noGrad(() => tidy(() => {
    t.normal_(mean, std);
    for (let i = 0; i < 20; i++) {
      const bad = t.lt(a).logicalOr(t.gt(b));
      if (!bad.any().item()) return;
      const fresh = t.clone().normal_(mean, std);
      t.copy_(bad.logicalNot().mul(t).add(bad.mul(fresh)));
    }
    t.clamp_(a, b);
  }));
  return t;
}
/** Identity-preserving init for convolutions: w[i, i, centre] = 1. */
export function dirac_(t: Tensor, groups = 1): Tensor {
  const s = t.shape;
  if (s.length < 3) throw new KilnError(`dirac_ needs a conv weight (3-5 dims), got [${s.join(', ')}]`, 'INVALID_ARGUMENT');
  if (!Number.isInteger(groups) || groups < 1 || s[0] % groups !== 0)
    throw invalidParameterError('dirac_: groups', `a positive integer dividing the ${s[0]} output channels`, groups);
  const outPerGroup = s[0] / groups;
  const data = new Float32Array(t.numel);
  const strides = s.map((_, i) => s.slice(i + 1).reduce((x, y) => x * y, 1));
  const centre = s.slice(2).reduce((acc, k, j) => acc + Math.floor(k / 2) * strides[j + 2], 0);
  for (let g = 0; g < groups; g++)
    for (let d = 0; d < Math.min(outPerGroup, s[1]); d++) data[(g * outPerGroup + d) * strides[0] + d * strides[1] + centre] = 1;
  noGrad(() => tidy(() => t.copy_(tensor(data, { shape: s }))));
  return t;
}
