/**
 * Grad-CAM (Selvaraju et al.; Captum's LayerGradCam): the activations A [N, K, h, w] of one layer,
 * weighted by the spatial mean of ∂(target logit)/∂A, summed over channels, optionally ReLU'd and
 * upsampled to the input's size. The layer's output is captured with a forward hook
 * (`Module.forwardWithActivation`).
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { tidy } from '../tensor/memory';
import { autograd, enableGrad, noGrad } from '../autograd';
import { Module, saveModes } from '../nn/module';
import { AdaptiveAvgPool2d, AdaptiveMaxPool2d, AvgPool2d, MaxPool2d } from '../nn/layers';
import { interpolate } from '../nn/functional';
import { Target, checkInput, checkOptions, checkLogits, targetIndex } from './common';

/** Options of `layerGradCam` (Captum's defaults: no ReLU, no upsampling). */
export interface LayerGradCamOptions {
  target: Target;
  /** the layer: a Module inside the model, or its dotted name ('layer4', 'features.6') */
  layer: Module | string;
  /** ReLU on the map (default false here, true in `gradCam`) */
  relu?: boolean;
  /** sum the weighted activations over channels to [N, 1, h, w] (default true); false keeps [N, K, h, w] */
  attrDimSummation?: boolean;
  /** resize the map to the input's H × W (default false here, true in `gradCam`) */
  upsample?: boolean;
  /** interpolation of the upsampling (default 'bilinear') */
  upsampleMode?: 'bilinear' | 'nearest' | 'bicubic';
}

/** Options of `gradCam`: as layerGradCam's, but `layer` defaults to `defaultCamLayer(model)`. */
export type GradCamOptions = Omit<LayerGradCamOptions, 'layer'> & { layer?: Module | string };

/** The dotted name of `layer` inside `model` (it must be one of its modules). */
export function layerName(model: Module, layer: Module | string, fn = 'gradCam'): string {
  if (typeof layer === 'string') {
    try {
      model.get(layer);
    } catch (e) {
      throw new KilnError(`${fn}: layer: ${(e as Error).message}`, 'INVALID_ARGUMENT');
    }
    return layer;
  }
  if (!(layer instanceof Module)) throw invalidParameterError(`${fn}: layer`, 'a Module inside the model or its dotted name', layer);
  const found = model.namedModules().find(([, m]) => m === layer);
  if (!found) throw new KilnError(`${fn}: layer is not a submodule of the model (a ${layer.constructor.name} found nowhere in model.namedModules())`, 'INVALID_ARGUMENT');
  return found[0];
}

/**
 * Grad-CAM as Captum's LayerGradCam computes it (defaults: relu false, no upsampling):
 * Σ_k mean_ij(∂y_c/∂A_k) · A_k, shaped [N, 1, h, w] at the layer's resolution.
 */
export function layerGradCam(model: Module, x: Tensor, o: LayerGradCamOptions): Tensor {
  return camImpl(model, x, o, 'layerGradCam', false, false);
}

/**
 * Grad-CAM heat map: ReLU(Σ_k α_k A_k) with α_k the spatial mean of ∂(target logit)/∂A_k,
 * bilinearly upsampled to the input's H × W: [N, 1, H, W] (set `upsample: false` for [N, 1, h, w]).
 * Without `layer`, the last layer with spatial feature maps (`defaultCamLayer`).
 */
export function gradCam(model: Module, x: Tensor, o: GradCamOptions): Tensor {
  if (o && typeof o === 'object' && o.layer === undefined && model instanceof Module) o = { ...o, layer: defaultCamLayer(model, x) };
  return camImpl(model, x, o as LayerGradCamOptions, 'gradCam', true, true);
}

/** @internal Grad-CAM with `fn` named in errors and the given defaults of `relu` and `upsample`. */
export function camImpl(model: Module, x: Tensor, o: LayerGradCamOptions, fn: string, reluDefault: boolean, upDefault: boolean): Tensor {
  if (!(model instanceof Module)) throw invalidParameterError(`${fn}: model`, 'a kiln.nn Module (its layers take forward hooks)', model);
  checkInput(x, fn);
  checkOptions(o, fn);
  if (o.layer === undefined) throw invalidParameterError(`${fn}: layer`, 'a Module inside the model or its dotted name', undefined);
  const name = layerName(model, o.layer, fn);
  const relu = o.relu ?? reluDefault, upsample = o.upsample ?? upDefault, sumDims = o.attrDimSummation ?? true;
  const mode = o.upsampleMode ?? 'bilinear';
  if (!['bilinear', 'nearest', 'bicubic'].includes(mode)) throw invalidParameterError('upsampleMode', "'bilinear', 'nearest' or 'bicubic'", o.upsampleMode);
  if (upsample && x.ndim !== 4) throw new KilnError(`${fn}: upsampling needs images [N, C, H, W], got shape [${x.shape.join(', ')}]`, 'INVALID_ARGUMENT');
  return tidy(() => {
    const n = x.size(0);
    const t = targetIndex(o.target, n, x.device);
    const { activation, grad } = enableGrad(() => {
      // the input requires grad so the activation does even when the layers before it are frozen
      const xi = x.detach().requiresGrad_(true);
      const { output, activation } = model.forwardWithActivation(xi, name);
      const sel = checkLogits(output, n, t.max).gather(1, t.index.unsqueeze(1)).sum();
      if (activation.ndim !== 4 || activation.size(0) !== n)
        throw new KilnError(`${fn}: layer '${name}' must output [N, K, h, w] feature maps, got shape [${activation.shape.join(', ')}]`, 'INVALID_ARGUMENT');
      const [grad] = autograd.grad(sel, activation, { allowUnused: true });
      if (!grad) throw new KilnError(`${fn}: the target logits do not depend on layer '${name}'`, 'INVALID_ARGUMENT');
      return { activation: activation.detach(), grad };
    });
    const weights = grad.mean([2, 3], true); // α_k per image: [N, K, 1, 1]
    let cam = sumDims ? weights.mul(activation).sum(1, true) : weights.mul(activation);
    if (relu) cam = cam.relu();
    if (upsample) cam = interpolate(cam, { size: [x.size(2), x.size(3)], mode, alignCorners: mode === 'nearest' ? undefined : false });
    return cam;
  });
}

const POOLS = [AdaptiveAvgPool2d, AdaptiveMaxPool2d, AvgPool2d, MaxPool2d];

/**
 * A sensible Grad-CAM layer for `model`: the dotted name of the last module to finish with a
 * spatial map [N, K, h, w], h·w > 1, that is not itself a pooling layer. Containers count and
 * finish after their children, so this is the last feature block — resnet18's 'layer4',
 * simple-cnn's 'features' (whose output is already max-pooled; pass 'features.12' for the map
 * before that pooling). Runs one no-grad forward of `x` in eval mode, then restores every module's mode.
 */
export function defaultCamLayer(model: Module, x: Tensor): string {
  if (!(model instanceof Module)) throw invalidParameterError('model', 'a kiln.nn Module', model);
  checkInput(x, 'defaultCamLayer');
  const restoreModes = saveModes(model);
  let best: string | null = null;
  const removers = model.namedModules().filter(([nm]) => nm !== '').map(([nm, m]) => m.registerForwardHook((mod, _i, out) => {
    if (out.ndim === 4 && out.size(2) * out.size(3) > 1 && !POOLS.some((P) => mod instanceof P)) best = nm;
  }));
  model.eval();
  try {
    tidy(() => {
      noGrad(() => model.call(x.narrow(0, 0, 1)));
    });
  } finally {
    removers.forEach((r) => r());
    restoreModes();
  }
  if (best === null) throw new KilnError('defaultCamLayer: no layer of the model outputs spatial feature maps [N, K, h, w]; pass the layer explicitly', 'INVALID_ARGUMENT');
  return best;
}
