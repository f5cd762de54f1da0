/**
 * Learning-rate schedules (PyTorch's `torch.optim.lr_scheduler`, same numbers): each one
 * sets `optimizer.paramGroups[i].options.lr` when it is constructed and on every `step()`.
 *
 * Call `optimizer.step()` then `scheduler.step()` once per epoch (or per batch for
 * OneCycleLR); `ReduceLROnPlateau.step(metric)` takes the monitored value. Every schedule
 * has `getLastLr()` and a plain JSON-able `stateDict()` / `loadStateDict()`.
 */
export { LRScheduler, LRSchedulerBase, SchedulerState } from './base';
export { StepLR, MultiStepLR, ExponentialLR, LinearLR, LambdaLR, CosineAnnealingLR, SequentialLR, warmupCosine } from './simple';
export { OneCycleLR, OneCycleOptions } from './onecycle';
export { ReduceLROnPlateau, ReduceLROnPlateauOptions } from './plateau';
