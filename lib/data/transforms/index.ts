/**
 * Batch transforms (see base.ts): whole batches [B, C, H, W] through tensor ops, seeded by
 * `kiln.manualSeed`, on any device.
 */
export { BatchTransform, compose, normalize, augmentation, forEvaluation } from './base';
export {
  randomHorizontalFlip, randomVerticalFlip, cropAt, RandomCropOptions, randomCrop, centerCrop, randomTranslate,
  RandomErasingOptions, randomErasing, cutout,
} from './crop';
export { ColorJitterOptions, colorJitter, rgbToHsv, hsvToRgb, rgbToGrayscale } from './color';
export {
  ResizeOptions, resize, cropResize, RandomResizedCropOptions, randomResizedCrop, RandomAffineOptions, randomAffine, randomRotation, AffineOptions, affine,
} from './geometry';
export { AUGMENT_OPS, AugmentOp, AugmentFill, AugmentInterpolation, applyAugmentOps } from './augment-ops';
export {
  AugmentSpaceKind, augmentationSpace, TrivialAugmentWideOptions, trivialAugmentWide, RandAugmentOptions, randAugment,
  PolicyStep, AUTOAUGMENT_POLICIES, AutoAugmentOptions, autoAugment,
} from './autoaugment';
export { AugMixOptions, AugMixStep, AugMixDraw, augMix, applyAugMix } from './augmix';
