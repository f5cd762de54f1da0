/**
 * One image explained end to end by a method named as `kiln explain --method` names it, with that command's
 * defaults: the model's prediction, the attribution of a target class (default: the predicted one) and the heat-map
 * overlay. Shared by `kiln explain` and the inference server's /explanations route.
 */
import { KilnError, invalidParameterError } from '../errors';
import { Tensor } from '../tensor/tensor';
import { zerosLike } from '../tensor/creation';
import { cat } from '../tensor/ops';
import { tidy } from '../tensor/memory';
import { noGrad } from '../autograd';
import { Module } from '../nn/module';
import { gaussianBlur } from '../robust/filters';
import { Classifier, checkModel, positiveInt, nonNegativeNumber } from './common';
import { checkTemperature } from '../nn/classifier';
import { integratedGradients, saliency } from './attributions';
import { noiseTunnel } from './noise';
import { gradientShap } from './shap';
import { gradCam, defaultCamLayer } from './gradcam';
import { occlusion } from './occlusion';
import { deepLift } from './deeplift';
import { guidedBackprop, guidedGradCam } from './guided';
import { featureAblation } from './ablation';
import { lime } from './lime';
import { kernelShap } from './kernelshap';
import { shapleyValueSampling } from './shapley';
import { lrp, lrpChain } from './lrp';
import { gridMask } from './masks';
import { heatmapPixels, Sign } from './render';
import { ColormapName } from './colormaps';

/** The methods by their `kiln explain --method` names. */
export const IMAGE_METHODS = ['ig', 'saliency', 'smoothgrad', 'gradientshap', 'gradcam', 'occlusion', 'deeplift', 'guidedbackprop', 'guidedgradcam', 'ablation', 'lime', 'kernelshap', 'shapley', 'lrp'] as const;
/** One of `IMAGE_METHODS`. */
export type ImageMethod = (typeof IMAGE_METHODS)[number];
/** Methods that set forward hooks on the model's layers, so they need a kiln.nn Module (not a TorchScript model). */
export const HOOK_METHODS: readonly ImageMethod[] = ['gradcam', 'deeplift', 'guidedbackprop', 'guidedgradcam'];
/** Methods that switch the cells of a grid mask to the baseline (0 in the normalised input: the data set's mean colour). */
export const MASK_METHODS: readonly ImageMethod[] = ['ablation', 'lime', 'kernelshap', 'shapley'];

/** Options of `explainImage` (the defaults are `kiln explain`'s). */
export interface ExplainImageOptions {
  /** default 'gradcam' */
  method?: ImageMethod;
  /** class to explain (default: the predicted class) */
  target?: number;
  /** ig: points on the path (default 50) */
  steps?: number;
  /** smoothgrad, gradientshap: random draws (default 20); lime, kernelshap: coalitions (default 50); shapley: permutations (default 10) */
  samples?: number;
  /** smoothgrad, gradientshap: noise standard deviation in the normalised input's units (default: 15% of the input's range for smoothgrad, 0 for gradientshap) */
  stdevs?: number;
  /** gradientshap: reference images, a black image and/or the image blurred with σ = 1/8 of its shorter side (default 'both') */
  baselines?: 'black' | 'blur' | 'both';
  /** gradcam, guidedgradcam: dotted layer name (default `defaultCamLayer`) */
  layer?: string;
  /** occlusion: side of the square window (default 1/8 of the shorter side, at least 2) */
  window?: number;
  /** occlusion: window stride (default half the window) */
  stride?: number;
  /** ablation, lime, kernelshap, shapley: side of the grid mask's square cells (default 1/8 of the shorter side) */
  cell?: number;
  /** the reported `probability` is softmax(logits / temperature) (a calibrated model's, `Trainer.calibrate`; default 1); the attributions are of the logits */
  temperature?: number;
}

/** What `explainImage` returns: attributions [1, C, H, W] ([1, 1, H, W] for gradcam; the caller disposes them) and the prediction. */
export interface ImageExplanation {
  attributions: Tensor;
  /** the predicted class and its softmax probability */
  predicted: number;
  probability: number;
  /** the class explained */
  target: number;
  /** gradcam, guidedgradcam: the layer used */
  layer?: string;
}

/**
 * The class a `target` names: a class name, or an index (a number or digits) below the number of classes — the class
 * names', or `numClasses` for a model without names (-1: not known yet, any index).
 */
export function resolveTarget(spec: string | number, classNames: string[], numClasses = classNames.length): number {
  if (typeof spec === 'string') {
    const byName = classNames.indexOf(spec);
    if (byName >= 0) return byName;
  }
  const s = String(spec);
  const limit = classNames.length > 0 ? classNames.length : numClasses;
  if (/^\d+$/.test(s) && (limit < 0 || Number(s) < limit)) return Number(s);
  if (classNames.length === 0) throw new KilnError(`target '${s}' is not a class index below ${limit} (the model has no class names)`, 'INVALID_ARGUMENT');
  throw new KilnError(`target '${s}' is neither a class name nor an index below ${classNames.length} (classes: ${classNames.slice(0, 12).join(', ')}${classNames.length > 12 ? ', …' : ''})`, 'INVALID_ARGUMENT');
}

/** Checks that `method` can explain `model`: a name in `IMAGE_METHODS`, and a kiln.nn Module for the hook methods. */
export function checkImageMethod(method: unknown, model: unknown): ImageMethod {
  if (typeof method !== 'string' || !(IMAGE_METHODS as readonly string[]).includes(method)) throw invalidParameterError('method', IMAGE_METHODS.join(', '), method);
  const m = method as ImageMethod;
  const others = () => IMAGE_METHODS.filter((x) => !HOOK_METHODS.includes(x) && x !== 'lrp').join(', ');
  if (m === 'lrp') {
    if (!(model instanceof Module))
      throw new KilnError(`method 'lrp' propagates relevance through the model's layers and needs a kiln.nn Module (a chain of layers); this model is not one: use ${others()}`, 'INVALID_ARGUMENT');
    lrpChain(model); // names a layer it cannot propagate through
  }
  if (HOOK_METHODS.includes(m) && !(model instanceof Module))
    throw new KilnError(`method '${m}' sets forward hooks on the model's layers and needs a kiln.nn Module; this model is not one (a TorchScript model has no hooks): use ${others()}`, 'INVALID_ARGUMENT');
  return m;
}

/**
 * Explains one image. `x` is the normalised model input [1, C, H, W] on the model's device; `image` the same image
 * before normalisation, [1, C, H, W] uint8 (0–255) or floating (0–1), on the CPU; `normalize` maps such [0, 1]
 * images [B, C, H, W] on the CPU to model inputs (gradientshap's baselines). Runs on the calling thread (gradients).
 */
export function explainImage(model: Classifier | Module, x: Tensor, image: Tensor, normalize: (images: Tensor) => Tensor, o: ExplainImageOptions = {}): ImageExplanation {
  const m = checkModel(model);
  const method = checkImageMethod(o.method ?? 'gradcam', model);
  if (x.ndim !== 4 || x.size(0) !== 1) throw new KilnError(`explainImage: x must be one image [1, C, H, W], got shape [${x.shape.join(', ')}]`, 'INVALID_ARGUMENT');
  const [H, W] = [x.size(2), x.size(3)];
  const steps = o.steps ?? 50;
  const samples = positiveInt(o.samples, 'samples', method === 'shapley' ? 10 : MASK_METHODS.includes(method) ? 50 : 20);
  const cell = positiveInt(o.cell, 'cell', Math.max(1, Math.floor(Math.min(H, W) / 8)));
  const stdevs = o.stdevs === undefined ? undefined : nonNegativeNumber(o.stdevs, 'stdevs', 0, 'the noise standard deviation');
  const temperature = o.temperature === undefined ? 1 : checkTemperature(o.temperature, 'explainImage: temperature');
  let layer = o.layer;
  return tidy(() => {
    const probs = noGrad(() => m.call(x).div(temperature).softmax(1));
    const top = probs.max(1) as { values: Tensor; indices: Tensor };
    const predicted = top.indices.item(), probability = top.values.item();
    const cls = o.target ?? predicted;
    let attr: Tensor;
    if (method === 'ig') attr = integratedGradients(m, x, { target: cls, steps }).attributions;
    else if (method === 'saliency') attr = saliency(m, x, { target: cls });
    else if (method === 'smoothgrad') {
      const range = (x.amax([0, 1, 2, 3]).item() - x.amin([0, 1, 2, 3]).item()) || 1;
      attr = noiseTunnel(m, x, { target: cls, samples, stdevs: stdevs ?? 0.15 * range });
    } else if (method === 'gradientshap') {
      const choice = o.baselines ?? 'both';
      if (!['black', 'blur', 'both'].includes(choice)) throw invalidParameterError('baselines', "'black', 'blur' or 'both'", o.baselines);
      const img01 = image.dtype === 'uint8' ? image.float().div(255) : image.float();
      const refs = [...(choice === 'blur' ? [] : [zerosLike(image, { dtype: 'float32' })]), ...(choice === 'black' ? [] : [gaussianBlur(img01, Math.min(H, W) / 8)])];
      const baselines = normalize(cat(refs)).to({ device: x.device });
      attr = gradientShap(m, x, { target: cls, baselines, samples, stdevs }).attributions;
    } else if (method === 'gradcam') {
      layer ??= defaultCamLayer(model as Module, x);
      attr = gradCam(model as Module, x, { target: cls, layer });
    } else if (method === 'deeplift') {
      attr = deepLift(model as Module, x, { target: cls });
    } else if (method === 'lrp') {
      attr = lrp(model as Module, x, { target: cls });
    } else if (method === 'guidedbackprop') {
      attr = guidedBackprop(model as Module, x, { target: cls });
    } else if (method === 'guidedgradcam') {
      layer ??= defaultCamLayer(model as Module, x);
      attr = guidedGradCam(model as Module, x, { target: cls, layer });
    } else if (MASK_METHODS.includes(method)) {
      const featureMask = gridMask(H, W, { cell });
      if (method === 'ablation') attr = featureAblation(m, x, { target: cls, featureMask });
      else if (method === 'lime') attr = lime(m, x, { target: cls, featureMask, samples });
      else if (method === 'kernelshap') attr = kernelShap(m, x, { target: cls, featureMask, samples });
      else attr = shapleyValueSampling(m, x, { target: cls, featureMask, samples });
    } else {
      const win = o.window ?? Math.max(2, Math.round(Math.min(H, W) / 8));
      const stride = o.stride ?? Math.max(1, Math.floor(win / 2));
      attr = occlusion(m, x, { target: cls, window: [win, win], strides: stride });
    }
    return { attributions: attr.detach(), predicted, probability, target: cls, ...(method === 'gradcam' || method === 'guidedgradcam' ? { layer } : {}) };
  });
}

/** Options of `explanationPixels`. */
export interface OverlayOptions {
  /** which attributions to draw (default: 'positive' for gradcam, occlusion and the mask methods, 'absolute' otherwise) */
  sign?: Sign;
  colormap?: ColormapName;
  /** opacity of the heat map over the image (default 0.5) */
  alpha?: number;
  /** longer side of the overlay in pixels (default 256) */
  size?: number;
}

/** The overlay of `explainImage`'s attributions over `image` as uint8 pixels [1, h, w, 3] (for `encodePng`). */
export function explanationPixels(attributions: Tensor, image: Tensor, method: ImageMethod, o: OverlayOptions = {}): Tensor {
  const [H, W] = [image.size(-2), image.size(-1)];
  const scale = (o.size ?? 256) / Math.max(H, W);
  const size: [number, number] = [Math.max(1, Math.round(H * scale)), Math.max(1, Math.round(W * scale))];
  const sign = o.sign ?? (method === 'gradcam' || method === 'occlusion' || MASK_METHODS.includes(method) ? 'positive' : 'absolute');
  return heatmapPixels(attributions, { image, sign, colormap: o.colormap, alpha: o.alpha, size });
}
