/**
 * `kiln.serve`: an HTTP inference server with dynamic batching, for one or several models with versions.
 *
 * ```ts
 * const { model, metadata } = kiln.loadModel('runs/fmnist/model.safetensors');
 * const server = await kiln.serve(model.eval(), { metadata, port: 8080, maxBatchSize: 32, maxDelayMs: 5 });
 * console.log(server.url);   // POST image bytes to `${server.url}/predictions`
 * await server.close();      // finishes in-flight requests
 *
 * const multi = await kiln.serve({ models: { fmnist: { path: 'runs/fmnist' }, digits: { path: 'runs/mnist' } }, managementPort: 8081 });
 * ```
 */

/** Batches single-image requests into one `forwardAsync` call (bounded queue, timeouts, drain). */
export { DynamicBatcher } from './batcher';
export type { BatcherOptions, BatchInfo, BatchModel, SubmitOptions } from './batcher';
/** The HTTP server (`Server`) and `serve(...)`, which creates and starts one. */
export { Server, serve } from './server';
export type { ServeOptions, ServerOptions, RegisterOptions, ModelSpec } from './server';
/** One served model version and the model-folder loader; the registry of names and versions. */
export { ModelEndpoint, loadModelDir, loadModelDirAsync } from './endpoint';
export type { ModelOptions, RuntimeOptions, ModelState, PredictResult } from './endpoint';
export { ModelRegistry } from './registry';
export { GraphedBatches, defaultBuckets, checkBuckets } from './graphs';
export type { CapturedForward, CaptureFn, GraphedShape } from './graphs';
/** The explanations API: request options, the one-at-a-time queue, and the per-input work (explain.ts). */
export { ExplainQueue, explainRequest, checkExplainable, EXPLAIN_FORMATS, MAX_EXPLAIN_STEPS, MAX_EXPLAIN_SAMPLES } from './explain';
export type { ExplainRequest, ExplanationJson } from './explain';
export type { ExplainResult } from './endpoint';
/** The Open Inference Protocol (KServe v2 / Triton REST): routes, model metadata, inference request parsing. */
export { dispatchV2, modelMetadata, outputValues, rawOutput, V2_EXTENSIONS, V2_PLATFORM } from './v2';
export type { V2Host, V2OutputValues } from './v2';
export { parseInferRequest, parseOutputs, inputTensor, checkInferMediaType, V2_INPUT, V2_OUTPUTS, V2_INPUT_DATATYPES } from './v2-request';
export type { V2Request, V2OutputRequest, V2InputData } from './v2-request';
/** The Open Inference Protocol over gRPC (`grpcPort`): the service, its .proto, a promise-returning client. */
export { GrpcInference, grpcClient, grpcService, grpcStatus, GRPC_METHODS } from './grpc';
export type { InferenceClient, GrpcCallOptions, GrpcMethod } from './grpc';
export { OPEN_INFERENCE_PROTO } from './grpc-proto';
/** Request parsing and preprocessing (decode → resize → normalise), and the HTTP error type. */
export { Preprocessor, HttpError, IMAGE_CONTENT_TYPES } from './inputs';
export type { InputSpec } from './inputs';
/** Prometheus metrics: counters, gauges, histograms, a registry, and the server's metric set. */
export { Counter, Gauge, Histogram, Registry, PROMETHEUS_CONTENT_TYPE, LATENCY_BUCKETS, BATCH_BUCKETS } from './metrics';
export type { GaugeSample, MetricLabels } from './metrics';
export { ServerMetrics } from './server-metrics';
export { jsonLinesLog, requestId } from './access-log';
export type { AccessLogEntry, AccessLogger } from './access-log';
