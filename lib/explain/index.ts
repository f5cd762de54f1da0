/**
 * `kiln.explain`: attributions for image classifiers — integrated gradients, saliency, input ×
 * gradient, noise tunnel (SmoothGrad, SmoothGrad², VarGrad), GradientShap, Grad-CAM, occlusion, DeepLift,
 * DeepLiftShap, Guided Backprop, Deconvolution, Guided Grad-CAM, layer attributions, and over feature
 * masks FeatureAblation, Lime and KernelShap —, one image explained end to end by a method name
 * (`explainImage`, as `kiln explain`), Captum's metrics of explanations (infidelity, max-sensitivity)
 * and heat-map rendering (PNG via sharp), following Captum's definitions.
 */
export { integratedGradients, saliency, inputXGradient, riemann, IntegratedGradientsOptions, Attribution } from './attributions';
export { Target, Classifier } from './common';
export { noiseTunnel, smoothGrad, NoiseTunnelOptions, NoiseTunnelType, AttributionMethod, AttributionMethodName } from './noise';
export { gradCam, layerGradCam, defaultCamLayer, GradCamOptions, LayerGradCamOptions } from './gradcam';
export { occlusion, OcclusionOptions } from './occlusion';
export { layerActivation, layerGradientXActivation, layerIntegratedGradients, LayerIntegratedGradientsOptions } from './layer';
export { deepLift, deepLiftShap, DeepLiftOptions, DeepLiftShapOptions } from './deeplift';
export { guidedBackprop, deconvolution, guidedGradCam, GuidedBackpropOptions, GuidedGradCamOptions } from './guided';
export {
  heatmap, heatmaps, heatmapPixels, saveHeatmap, encodePng, normalizeAttribution, cumulativeSumThreshold, colormapTable,
  HeatmapOptions, Sign, COLORMAP_NAMES, ColormapName,
} from './render';
export { gradientShap, GradientShapOptions, GradientShapResult } from './shap';
export {
  explainImage, explanationPixels, resolveTarget, checkImageMethod, IMAGE_METHODS, HOOK_METHODS, ImageMethod, ExplainImageOptions, ImageExplanation, OverlayOptions,
} from './image';
export {
  infidelity, sensitivityMax, InfidelityOptions, SensitivityOptions, InfidelityPerturb, SensitivityPerturb, ExplanationFunction,
} from './metrics';
export { featureAblation, FeatureAblationOptions } from './ablation';
export { shapleyValueSampling, shapleyValues, ShapleyOptions, MAX_EXACT_SHAPLEY_FEATURES } from './shapley';
export { lrp, lrpChain, LrpOptions, LrpRule } from './lrp';
export { featurePermutation, FeaturePermutationOptions } from './permutation';
export { lime, LimeOptions, SurrogateOptions } from './lime';
export { kernelShap, shapleyCoalitions, KernelShapOptions, KERNEL_SHAP_INF_WEIGHT } from './kernelshap';
export { gridMask, GridMaskOptions } from './masks';
export { SurrogateKind } from './surrogate';
