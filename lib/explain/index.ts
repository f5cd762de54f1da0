/**
 * `kiln.explain`: attributions for image classifiers — integrated gradients, saliency, input ×
 * gradient, noise tunnel (SmoothGrad, SmoothGrad², VarGrad), GradientShap, Grad-CAM, occlusion, DeepLift and
 * DeepLiftShap —, one image explained end to end by a method name (`explainImage`, as `kiln explain`), Captum's metrics of explanations (infidelity, max-sensitivity) and heat-map rendering (PNG
 * via sharp), following Captum's definitions.
 */
export { integratedGradients, saliency, inputXGradient, riemann, IntegratedGradientsOptions, Attribution } from './attributions';
export { Target, Classifier } from './common';
export { noiseTunnel, smoothGrad, NoiseTunnelOptions, NoiseTunnelType, AttributionMethod, AttributionMethodName } from './noise';
export { gradCam, layerGradCam, defaultCamLayer, GradCamOptions, LayerGradCamOptions } from './gradcam';
export { occlusion, OcclusionOptions } from './occlusion';
export { deepLift, deepLiftShap, DeepLiftOptions, DeepLiftShapOptions } from './deeplift';
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
