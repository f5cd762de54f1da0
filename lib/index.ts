/**
 * Kiln: train, harden, explain and serve convolutional image classifiers from Node.js,
 * on libtorch (CPU or CUDA). This module re-exports the public API.
 */
export { KilnError, KilnErrorCode, invalidParameterError } from './errors';
export { info, setNumThreads, KilnInfo, CudaDeviceInfo } from './info';
export { DType, Device, TypedArray, DTYPES } from './tensor/dtype';
export { Tensor, NestedArray, Operand, ToOptions } from './tensor/tensor';
export {
  tensor, zeros, ones, empty, full, rand, randn, randint, randperm, arange, linspace, eye,
  zerosLike, onesLike, emptyLike, fullLike, randLike, randnLike, randintLike, manualSeed, getRngState, setRngState,
  CreateOptions, TensorData,
} from './tensor/creation';
export { cat, stack, where, matmul } from './tensor/ops';
export { sampleGamma, sampleDirichlet } from './tensor/distributions';
export { tidy, tidyAsync, keep, memory, MemoryInfo } from './tensor/memory';
export { autograd, noGrad, enableGrad, isGradEnabled, GradOptions } from './autograd';

/** Neural-network building blocks: modules, layers, `nn.functional`, `nn.init`, `nn.utils`. */
export * as nn from './nn';
/** Optimizers and learning-rate schedules. */
export * as optim from './optim';
/** The model zoo: simpleCnn, resnet9, resnet18/34 (torchvision keys), airbench94. */
export { models, Architecture } from './models';
export { saveSafetensors, loadSafetensors, SafetensorsFile, saveModel, loadModel, save, load, loadTorchStateDict, loadTorchStateDictAsync, TorchStateDictOptions } from './io';
/** Files: safetensors, whole models, `torch.save` state dicts (`kiln.io.loadTorchStateDict`). */
export * as io from './io';
/** Data sets, image folders (sharp), IDX files, the DataLoader and batch transforms. */
export * as data from './data';
/** TorchScript: `kiln.jit.load(path)` for models saved by Python's torch.jit.save; `kiln.jit.save(model, path, example)` exports. */
export * as jit from './nn/jit';
/** ONNX: `kiln.onnx.export(model, file, example)` writes a model for ONNX Runtime, TensorRT and browsers. */
export * as onnx from './onnx';
/** Mixed precision: autocast (fp16/bf16), GradScaler, cuDNN benchmark. */
export * as amp from './amp';
/** libtorch's numeric switches: cuDNN benchmark/deterministic, TF32, deterministic algorithms. */
export * as backends from './backends';
/** CUDA devices: availability, the driver's device list, synchronize, memory held by tensors */
export * as cuda from './cuda';
/** libtorch's profiler around a piece of work: per-op counts and CPU/GPU time, Chrome traces. */
export * as profiler from './profiler';
/** Training: Trainer, History, callbacks, metrics, loggers, plots. */
export * as train from './train';
export {
  Trainer, History, EarlyStopping, ModelCheckpoint, TerminateOnNaN, CSVLogger, JSONLinesLogger, TensorBoardLogger,
  LambdaCallback, LRSchedulerCallback, ModelEMA,
} from './train';
/** Explanations: integrated gradients, saliency. */
export * as explain from './explain';
/** Robustness: FGSM/PGD attacks, adversarial training, TRADES, input-gradient penalty, corruptions, reports. */
export * as robust from './robust';
/** Serving: the HTTP and gRPC inference server with dynamic batching (`kiln serve`), the batcher, Prometheus metrics. */
export * as serving from './serve';
export { serve, Server, ServeOptions, ServerOptions, DynamicBatcher, BatcherOptions } from './serve';
