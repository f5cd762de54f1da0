/**
 * Batch transforms (see base.ts): whole batches [B, C, H, W] through tensor ops, seeded by
 * `kiln.manualSeed`, on any device.
 */
export { BatchTransform, compose, normalize, augmentation, forEvaluation } from './base';
export {
  randomHorizontalFlip, randomVerticalFlip, cropAt, RandomCropOptions, randomCrop, centerCrop, randomTranslate,
  RandomErasingOptions, randomErasing, cutout,
} from './crop';
export { ColorJitterOptions, colorJitter, rgbToHsv, hsvToRgb } from './color';
export {
  ResizeOptions, resize, cropResize, RandomResizedCropOptions, randomResizedCrop, RandomAffineOptions, randomAffine, randomRotation, AffineOptions, affine,
} from './geometry';
