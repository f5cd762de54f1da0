/** The metrics a `Server` exports at GET /metrics (Prometheus text format), labelled by model and version. */
import { memory } from '../tensor/memory';
import { Counter, Gauge, GaugeSample, Histogram, MetricLabels, Registry, LATENCY_BUCKETS, BATCH_BUCKETS, PROMETHEUS_CONTENT_TYPE } from './metrics';
import type { BatchInfo, DynamicBatcher } from './batcher';

/** What the per-model gauges read: a model name, version and batcher. */
export interface MetricsSource {
  readonly name: string;
  readonly version: string;
  readonly batcher: DynamicBatcher;
  readonly explainQueue?: { readonly depth: number };
}

/** The `model` and `version` labels of one served model version. */
export function modelLabels(m: { name: string; version: string }): MetricLabels {
  return { model: m.name, version: m.version };
}

/** Request, batch, queue and memory metrics of one server. */
export class ServerMetrics {
  readonly registry = new Registry();
  readonly contentType = PROMETHEUS_CONTENT_TYPE;
  /** HTTP requests by route, method and status (and model and version on model routes) */
  readonly requests = this.registry.register(new Counter('kiln_http_requests_total', 'HTTP requests by route, method and status code (and model and version on model routes).'));
  /** request latency by route (and model and version) */
  readonly latency = this.registry.register(new Histogram('kiln_http_request_duration_seconds', 'Time from request to response, by route (and model and version).', LATENCY_BUCKETS));
  /** images predicted, by model and version */
  readonly images = this.registry.register(new Counter('kiln_images_total', 'Images (inputs) predicted, by model and version.'));
  /** images per batch, by model and version */
  readonly batchSize = this.registry.register(new Histogram('kiln_batch_size', 'Images per model batch, by model and version.', BATCH_BUCKETS));
  /** batch run time, by model and version */
  readonly batchLatency = this.registry.register(new Histogram('kiln_batch_duration_seconds', 'Time to run one batch (forward, softmax, split), by model and version.', LATENCY_BUCKETS));
  /** batches that failed, by model and version */
  readonly batchErrors = this.registry.register(new Counter('kiln_batch_errors_total', 'Batches whose forward failed, by model and version.'));
  /** explanation requests by model, version, method and status */
  readonly explanations = this.registry.register(new Counter('kiln_explanations_total', 'Explanation requests by model, version, method and status code.'));
  /** explanation latency by model, version and method */
  readonly explainLatency = this.registry.register(new Histogram('kiln_explanation_duration_seconds', 'Time from an explanation request to its answer, by model, version and method.', LATENCY_BUCKETS));
  /** gRPC calls by method and status code (and model and version where one was reached) */
  readonly grpcRequests = this.registry.register(new Counter('kiln_grpc_requests_total', 'gRPC calls (Open Inference Protocol) by method and status code (and model and version where one was reached).'));
  /** gRPC call latency by method (and model and version) */
  readonly grpcLatency = this.registry.register(new Histogram('kiln_grpc_request_duration_seconds', 'Time from a gRPC call to its answer, by method (and model and version).', LATENCY_BUCKETS));
  private sources: () => MetricsSource[] = () => [];
  private inflight: () => number = () => 0;
  private readonly tensors: Gauge;
  private readonly cpuBytes: Gauge;
  private readonly cudaBytes: Gauge;

  constructor() {
    const r = this.registry;
    const perModel = (f: (b: DynamicBatcher) => number) => (): GaugeSample[] => this.sources().map((s) => ({ labels: modelLabels(s), value: f(s.batcher) }));
    r.register(new Gauge('kiln_queue_depth', 'Images waiting for a batch, by model and version.', perModel((b) => b.queueDepth)));
    r.register(new Gauge('kiln_explain_queue_depth', 'Explanation requests waiting (one runs at a time), by model and version.',
      () => this.sources().map((s) => ({ labels: modelLabels(s), value: s.explainQueue?.depth ?? 0 }))));
    r.register(new Gauge('kiln_inflight_requests', 'HTTP requests and gRPC calls being handled.', () => this.inflight()));
    r.register(new Gauge('kiln_inflight_batches', 'Batches running on the model, by model and version.', perModel((b) => b.inFlightBatches)));
    // set from one memory() call per scrape (render)
    this.tensors = r.register(new Gauge('kiln_tensors_alive', 'Live Kiln tensor handles in the process.'));
    this.cpuBytes = r.register(new Gauge('kiln_tensor_cpu_bytes', 'Bytes held by live CPU tensors.'));
    this.cudaBytes = r.register(new Gauge('kiln_tensor_cuda_bytes', 'Bytes held by live CUDA tensors.'));
  }

  /** Connects the gauges to the served model versions and an in-flight request count. */
  bind(sources: () => MetricsSource[], inflight: () => number): void {
    this.sources = sources;
    this.inflight = inflight;
  }

  /** Records one answered request; `model` labels it with the model version it reached. */
  request(route: string, method: string, status: number, seconds: number, model?: { name: string; version: string }): void {
    const extra = model ? modelLabels(model) : {};
    this.requests.inc({ route, method, status: String(status), ...extra });
    this.latency.observe(seconds, { route, ...extra });
  }

  /** Records one answered gRPC call (`code`: the status's name, e.g. 'OK', 'INVALID_ARGUMENT'). */
  grpc(method: string, code: string, seconds: number, model?: { name: string; version: string }): void {
    const extra = model ? modelLabels(model) : {};
    this.grpcRequests.inc({ method, code, ...extra });
    this.grpcLatency.observe(seconds, { method, ...extra });
  }

  /** Records one answered explanation request of a model version (`method` as the request named it). */
  explanation(model: { name: string; version: string }, method: string, status: number, seconds: number): void {
    const labels = { ...modelLabels(model), method };
    this.explanations.inc({ ...labels, status: String(status) });
    this.explainLatency.observe(seconds, labels);
  }

  /** Records one finished batch of a model version. */
  batch(b: BatchInfo, model: { name: string; version: string }): void {
    const labels = modelLabels(model);
    this.batchSize.observe(b.size, labels);
    this.batchLatency.observe(b.seconds, labels);
    if (b.error) this.batchErrors.inc(labels);
  }

  /**
   * Forgets an unregistered model version's series (requests, latency, images, batches, explanations), so that series do not pile
   * up as versions come and go; registered again, its counters start from zero (a counter reset to Prometheus).
   */
  forget(model: { name: string; version: string }): void {
    const labels = modelLabels(model);
    for (const m of [this.requests, this.latency, this.grpcRequests, this.grpcLatency, this.images, this.batchSize, this.batchLatency, this.batchErrors, this.explanations, this.explainLatency]) m.drop(labels);
  }

  /** The Prometheus text of every metric (reads the tensor memory once). */
  render(): string {
    const m = memory();
    this.tensors.set(m.numTensors);
    this.cpuBytes.set(m.cpuBytes);
    this.cudaBytes.set(m.cudaBytes);
    return this.registry.render();
  }
}
