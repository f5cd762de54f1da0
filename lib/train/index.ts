/**
 * `kiln.train`: the Trainer (fit / evaluate / predict), metrics, callbacks, progress,
 * checkpoints, temperature scaling, knowledge distillation, weight averaging (ModelEMA), MixUp/CutMix objectives, TensorBoard event files and plots.
 */
export { Trainer, TrainerOptions, FitOptions, EvaluateResult, LossFn, Objective, ObjectiveContext } from './trainer';
export { CudaGraphTrainOptions, GraphSteps, StepTensors } from './graph-steps';
export { History, Logs } from './history';
export { MetricSpec } from './accumulator';
export { BatchSource, TensorPair } from './sources';
export { Callback, BatchLogs, LambdaCallback, MonitorMode } from './callback';
export {
  EarlyStopping, EarlyStoppingOptions, TerminateOnNaN, LRSchedulerCallback, LRSchedulerCallbackOptions,
  ReduceLROnPlateau, ReduceLROnPlateauOptions, Scheduler,
} from './callbacks';
export {
  ModelCheckpoint, ModelCheckpointOptions, CheckpointState, saveCheckpoint, loadCheckpoint, findCheckpoint,
  writeFolderAtomic, writeFileAtomic, formatPath,
} from './checkpoint';
export { CSVLogger, JSONLinesLogger } from './loggers';
export { ProfileSteps, ProfileStepsOptions, selfTimeTables } from './profile-steps';
export { ModelEMA, ModelEMAOptions, updateBatchNorm } from './ema';
export { findLR, plotLRFinder, suggestionWindow, LRFinderOptions, LRFinderResult } from './lr-finder';
export { mixup, cutmix, mixupCutmix, MixOptions, MixInfo, MixObjective, sampleBeta, cutmixBox } from './mix';
export {
  TensorBoardLogger, TensorBoardLoggerOptions, SummaryWriter, crc32c, maskedCrc32c, tfRecord, readTFRecords, encodeEvent, decodeProto,
} from './tensorboard';
export { Progress, Verbosity } from './progress';
export {
  accuracy, topKAccuracy, confusionMatrix, classificationReport, ClassificationReport, precisionRecallF1,
  expectedCalibrationError, CalibrationOptions, reliability, ReliabilityBin,
} from './metrics';
export { ttaLogits, checkTTA, TTA, TTA_MODES } from './tta';
export { distillation, DistillationOptions, DistillationObjective } from './distill';
export { fitTemperature, FitTemperatureOptions, TemperatureFit, TEMPERATURE_RANGE } from './calibration';
export {
  plotHistory, plotConfusionMatrix, trainingCurvesSvg, confusionMatrixSvg, confusionMatrixPng, CurvesOptions, ConfusionPlotOptions,
  plotReliability, reliabilityDiagramSvg, ReliabilityCurve,
} from './plots';
