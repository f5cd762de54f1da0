/** `kiln.optim`: optimizers and learning-rate schedules. */
export { Optimizer, OptimizerState, ParamGroup, Params, SGD, SGDOptions, Adam, AdamW, AdamOptions, RMSprop, RMSpropOptions } from './optimizer';
export {
  LRScheduler, LRSchedulerBase, SchedulerState, StepLR, MultiStepLR, ExponentialLR, LinearLR, LambdaLR,
  CosineAnnealingLR, SequentialLR, warmupCosine, OneCycleLR, OneCycleOptions, ReduceLROnPlateau, ReduceLROnPlateauOptions,
} from './schedulers';
