/**
 * `kiln.onnx`: `export(model, file, example)` writes a Kiln model as an ONNX file for ONNX
 * Runtime, TensorRT and browsers (see lib/onnx/export.ts for the op mapping and limits);
 * `load(file)` runs such a file in ONNX Runtime behind Kiln's `forwardAsync` (lib/onnx/runtime.ts).
 */
export { exportOnnx as export, OnnxExportOptions, OnnxExportResult, OnnxValueSummary } from './export';
export { load, OnnxModel, OnnxLoadOptions } from './runtime';
