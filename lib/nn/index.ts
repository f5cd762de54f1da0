/** `kiln.nn`: modules, layers, containers, initialisers, functional ops and gradient utilities. */
export { Module, LoadReport, ForwardHook, ModuleSpec } from './module';
import './spec'; // native inference specs of the built-in layers (forwardAsync on a worker thread)
export {
  Conv2d, Conv2dOptions, Linear, BatchNorm2d, BatchNormOptions, Dropout, Dropout2d, MaxPool2d, AvgPool2d,
  AdaptiveAvgPool2d, AdaptiveMaxPool2d, Flatten, ReLU, ReLU6, LeakyReLU, GELU, SiLU, Hardswish, Hardsigmoid, Tanh, Sigmoid, Softmax, Identity, Mul,
  LayerNorm, LayerNorm2d, LayerNormOptions, Permute,
} from './layers';
export { Sequential, Residual } from './containers';
export { CudaGraph, CudaGraphOptions, cudaGraphsAvailable, RecordedGraph, recordGraph, recordingGraph, onGraphReplay } from './graph';
import * as functional from './functional';
import * as init from './init';
import * as utils from './utils';
export { functional, init, utils };
