/** `kiln.explain`: attributions for image classifiers (integrated gradients, saliency). */
export { integratedGradients, saliency, riemann, IntegratedGradientsOptions, Attribution, Target, Classifier } from './attributions';
