/**
 * Native inference specs of the built-in layers and containers (`Module.toSpec`): what
 * native/module.cc compiles into a program that `forwardAsync` runs on a worker thread.
 * Parameters travel as tensor handles, so the program sees later weight updates.
 */
import { Module, ModuleSpec } from './module';
import * as L from './layers';
import { Sequential, Residual } from './containers';

type Pair = number | [number, number];
const pair = (v: Pair): [number, number] => (typeof v === 'number' ? [v, v] : v);
const hid = (t: { id: number } | null | undefined): number => (t ? t.id : -1);

function define<T extends Module>(cls: abstract new (...a: never[]) => T, spec: (m: T) => ModuleSpec | null): void {
  (cls.prototype as Module).toSpec = function (this: T) { return spec(this); };
}

/** Specs of several modules in order, or null if any cannot run natively. */
export function specsOf(mods: Module[]): ModuleSpec[] | null {
  const out: ModuleSpec[] = [];
  for (const m of mods) {
    const s = m.toSpec();
    if (!s) return null;
    out.push(s);
  }
  return out;
}

define(L.Conv2d, (m) => {
  const o = m.options;
  const base = { op: 'conv2d', weight: m.weight.id, bias: hid(m.bias), stride: o.stride, dilation: o.dilation, groups: o.groups };
  if (o.paddingMode === 'zeros' || o.padding === 'valid') {
    return typeof o.padding === 'string' ? { ...base, paddingStr: o.padding } : { ...base, padding: o.padding };
  }
  const [ph, pw] = o.padding === 'same'
    ? [0, 1].map((i) => { const t = o.dilation[i] * (o.kernelSize[i] - 1); return [Math.floor(t / 2), t - Math.floor(t / 2)]; })
    : [[o.padding[0], o.padding[0]], [o.padding[1], o.padding[1]]];
  return { ...base, padding: [0, 0], pad: [pw[0], pw[1], ph[0], ph[1]], padMode: o.paddingMode };
});
define(L.Linear, (m) => ({ op: 'linear', weight: m.weight.id, bias: hid(m.bias) }));
define(L.BatchNorm2d, (m) => ({ op: 'batchnorm', weight: hid(m.weight), bias: hid(m.bias), runningMean: hid(m.runningMean), runningVar: hid(m.runningVar), eps: m.eps }));
define(L.Dropout, () => ({ op: 'identity' }));
define(L.Dropout2d, () => ({ op: 'identity' }));
define(L.Identity, () => ({ op: 'identity' }));
define(L.MaxPool2d, (m) => {
  const k = pair(m.kernelSize);
  return { op: 'maxpool2d', kernel: k, stride: pair(m.options.stride ?? k), padding: pair(m.options.padding ?? 0), dilation: pair(m.options.dilation ?? 1), ceilMode: !!m.options.ceilMode };
});
define(L.AvgPool2d, (m) => {
  const k = pair(m.kernelSize);
  return { op: 'avgpool2d', kernel: k, stride: pair(m.options.stride ?? k), padding: pair(m.options.padding ?? 0), ceilMode: !!m.options.ceilMode, countIncludePad: m.options.countIncludePad ?? true };
});
define(L.AdaptiveAvgPool2d, (m) => ({ op: 'adaptiveavgpool2d', size: pair(m.outputSize) }));
define(L.AdaptiveMaxPool2d, (m) => ({ op: 'adaptivemaxpool2d', size: pair(m.outputSize) }));
define(L.Flatten, (m) => ({ op: 'flatten', start: m.startDim, end: m.endDim }));
define(L.ReLU, () => ({ op: 'relu' }));
define(L.ReLU6, () => ({ op: 'hardtanh', min: 0, max: 6 }));
define(L.LeakyReLU, (m) => ({ op: 'leakyrelu', slope: m.negativeSlope }));
define(L.GELU, (m) => ({ op: 'gelu', approximate: m.approximate }));
define(L.SiLU, () => ({ op: 'silu' }));
define(L.Hardswish, () => ({ op: 'hardswish' }));
define(L.Hardsigmoid, () => ({ op: 'hardsigmoid' }));
define(L.Tanh, () => ({ op: 'tanh' }));
define(L.Sigmoid, () => ({ op: 'sigmoid' }));
define(L.Softmax, (m) => ({ op: 'softmax', dim: m.dim }));
define(L.Mul, (m) => ({ op: 'mul', scale: m.scale }));
define(L.LayerNorm, (m) => ({ op: 'layernorm', shape: m.normalizedShape, weight: hid(m.weight), bias: hid(m.bias), eps: m.eps }));
define(L.LayerNorm2d, (m) => ({
  op: 'sequential',
  children: [{ op: 'permute', dims: [0, 2, 3, 1] }, { op: 'layernorm', shape: m.normalizedShape, weight: hid(m.weight), bias: hid(m.bias), eps: m.eps }, { op: 'permute', dims: [0, 3, 1, 2] }],
}));
define(L.Permute, (m) => ({ op: 'permute', dims: m.dims }));
define(Sequential, (m) => {
  const children = specsOf([...m._modules.values()]);
  return children && { op: 'sequential', children };
});
define(Residual, (m) => {
  const main = m.main.toSpec();
  const shortcut = m.shortcut ? m.shortcut.toSpec() : null;
  const post = m.post ? m.post.toSpec() : null;
  if (!main || (m.shortcut && !shortcut) || (m.post && !post)) return null;
  return { op: 'residual', main, shortcut, post };
});
