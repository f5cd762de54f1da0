/**
 * `kiln.data`: data sets (in-memory tensors, image folders through sharp, IDX files,
 * Fashion-MNIST, MNIST digits, synthetic shapes), splits, the prefetching DataLoader and
 * batch transforms.
 */
export { Dataset, Sample, Batch, TensorDataset, Subset, labelsOf } from './dataset';
export { idx, readIdx, parseIdx, IdxData, IdxType } from './idx';
export { fashionMnist, mnist, FashionMnistOptions, FASHION_MNIST_ROOT, FASHION_MNIST_CLASSES } from './datasets';
export { cifar10, cifar100, CifarOptions, CIFAR10_CLASSES } from './cifar';
export { shapes, ShapesOptions, SHAPE_CLASSES } from './shapes';
export { imageFolder, imageList, imageCsv, parseCsv, ImageFolder, ImageFolderOptions, ImageListOptions, ImageCsvOptions } from './image-folder';
export { decodeImage, decodeImages, Decoded, DecodeOptions, Decoder, Fit, IMAGE_EXTENSIONS } from './decode';
export { DiskCache } from './disk-cache';
export { randomSplit, stratifiedSplit } from './split';
export { DataLoader, DataLoaderOptions } from './loader';
export { Sampler, WeightedRandomSampler, WeightedRandomSamplerOptions, SubsetRandomSampler, classBalancedWeights } from './sampler';
export { meanStd } from './stats';
import * as transforms from './transforms';
export { transforms };
export {
  BatchTransform, compose, normalize, randomHorizontalFlip, randomVerticalFlip, randomCrop, randomTranslate,
  randomErasing, cutout, colorJitter, resize, randomResizedCrop, randomAffine, randomRotation, centerCrop, forEvaluation,
  trivialAugmentWide, randAugment, autoAugment, augMix, augmentation, augmentationSpace, AUTOAUGMENT_POLICIES,
} from './transforms';

import { idx } from './idx';
import { fashionMnist, mnist } from './datasets';
import { cifar10, cifar100 } from './cifar';
import { shapes } from './shapes';
/** The data set constructors grouped as in the issue: `kiln.data.datasets.fashionMnist()` etc. */
export const datasets = { idx, fashionMnist, mnist, shapes, cifar10, cifar100 };
