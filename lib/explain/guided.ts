/**
 * Guided Backprop (Springenberg et al.), Deconvolution (Zeiler & Fergus) and Guided Grad-CAM
 * (Selvaraju et al.), as Captum's GuidedBackprop, Deconvolution and GuidedGradCam.
 *
 * Both gradient rules change only the backward of ReLU modules (Captum overrides nn.ReLU and
 * nothing else; other nonlinear layers keep their ordinary gradient): Guided Backprop passes
 * relu(g)·1[x > 0], Deconvolution relu(g), for the output gradient g. Those are nonlinear in g, so
 * a forward hook on every ReLU module replaces its output by `guidedRelu(input)` /
 * `deconvRelu(input)` (native autograd functions: the same value, the rule as their backward).
 * Guided Grad-CAM multiplies the guided-backprop attributions by the ReLU'd Grad-CAM map of a
 * layer (computed with ordinary gradients), upsampled to the input's H × W.
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { tidy } from '../tensor/memory';
import { Module } from '../nn/module';
import { ReLU } from '../nn/layers';
import { deconvRelu, guidedRelu, interpolate } from '../nn/functional';
import { Classifier, Target, checkInput, checkOptions, inputGradient, targetIndex } from './common';
import { camImpl, defaultCamLayer } from './gradcam';

/** Options of `guidedBackprop` and `deconvolution`. */
export interface GuidedBackpropOptions {
  target: Target;
}

/** Options of `guidedGradCam`. */
export interface GuidedGradCamOptions {
  target: Target;
  /** the Grad-CAM layer: a Module inside the model or its dotted name (default: `defaultCamLayer(model, x)`) */
  layer?: Module | string;
  /** how the layer's map is resized to the input's H × W (default 'nearest', as Captum) */
  interpolateMode?: 'nearest' | 'bilinear' | 'bicubic' | 'area';
}

const MODES = ['nearest', 'bilinear', 'bicubic', 'area'];

/** Checks that `model` is a kiln Module (its ReLU modules take forward hooks). */
function checkHookable(model: unknown, fn: string): Module {
  if (!(model instanceof Module))
    throw invalidParameterError(`${fn}: model`, 'a kiln.nn Module (its ReLU modules take forward hooks; TorchScript models have none)', model);
  return model;
}

/**
 * ∂(target logit)/∂x with every ReLU module's output replaced by `rule(input)`; the hooks are
 * removed afterwards, also after an error. Modes and parameter `.grad`s are left alone.
 */
function modifiedReluGradient(model: Classifier | Module, x: Tensor, o: GuidedBackpropOptions, fn: string, rule: (t: Tensor) => Tensor): Tensor {
  const m = checkHookable(model, fn);
  checkInput(x, fn);
  checkOptions(o, fn);
  return tidy(() => {
    const t = targetIndex(o.target, x.size(0), x.device);
    const relus = new Set(m.namedModules().map(([, mod]) => mod).filter((mod) => mod instanceof ReLU)); // a shared module once
    const removers = [...relus].map((mod) => mod.registerForwardHook((_m, input) => rule(input)));
    try {
      return inputGradient(m, x, t);
    } finally {
      removers.forEach((r) => r());
    }
  });
}

/**
 * Guided Backprop: the gradient of the target logits with respect to `x` [N, …], where every ReLU
 * module passes back only positive gradients and only where its input was positive
 * (relu(g)·1[x > 0]). ReLUs a custom module applies functionally in its `forward` keep their
 * ordinary gradient (as in Captum); with no ReLU module it is the plain gradient.
 */
export function guidedBackprop(model: Classifier | Module, x: Tensor, o: GuidedBackpropOptions): Tensor {
  return modifiedReluGradient(model, x, o, 'guidedBackprop', guidedRelu);
}

/**
 * Deconvolution (deconvnet): the gradient of the target logits with respect to `x` [N, …], where
 * every ReLU module passes back relu(g) of its output gradient g, whatever the sign of its input.
 * Functionally applied ReLUs keep their ordinary gradient (as in Captum).
 */
export function deconvolution(model: Classifier | Module, x: Tensor, o: GuidedBackpropOptions): Tensor {
  return modifiedReluGradient(model, x, o, 'deconvolution', deconvRelu);
}

/**
 * Guided Grad-CAM: `guidedBackprop` attributions [N, C, H, W] times the ReLU'd Grad-CAM map of
 * `layer` [N, 1, h, w] (ordinary gradients) resized to H × W by `interpolateMode` — Captum's
 * GuidedGradCam with attribute_to_layer_input false. Needs images [N, C, H, W].
 */
export function guidedGradCam(model: Classifier | Module, x: Tensor, o: GuidedGradCamOptions): Tensor {
  const fn = 'guidedGradCam';
  const m = checkHookable(model, fn);
  checkInput(x, fn);
  checkOptions(o, fn);
  const mode = o.interpolateMode ?? 'nearest';
  if (!MODES.includes(mode)) throw invalidParameterError(`${fn}: interpolateMode`, "'nearest', 'bilinear', 'bicubic' or 'area'", o.interpolateMode);
  if (x.ndim !== 4) throw new KilnError(`${fn}: input must be images [N, C, H, W], got shape [${x.shape.join(', ')}]`, 'INVALID_ARGUMENT');
  const layer = o.layer ?? defaultCamLayer(m, x);
  return tidy(() => {
    const cam = camImpl(m, x, { target: o.target, layer, relu: true }, fn, true, false);
    const gb = guidedBackprop(m, x, { target: o.target });
    // align_corners unset in Captum: PyTorch's default, false (said explicitly to keep libtorch quiet)
    const aligned = mode === 'bilinear' || mode === 'bicubic' ? false : undefined;
    return gb.mul(interpolate(cam, { size: [x.size(2), x.size(3)], mode, alignCorners: aligned }));
  });
}
