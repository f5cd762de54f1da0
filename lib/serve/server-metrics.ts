/** The metrics a `Server` exports at GET /metrics (Prometheus text format). */
import { memory } from '../tensor/memory';
import { Counter, Gauge, Histogram, Registry, LATENCY_BUCKETS, BATCH_BUCKETS, PROMETHEUS_CONTENT_TYPE } from './metrics';
import type { BatchInfo, DynamicBatcher } from './batcher';

/** Request, batch, queue and memory metrics of one server. */
export class ServerMetrics {
  readonly registry = new Registry();
  readonly contentType = PROMETHEUS_CONTENT_TYPE;
  /** HTTP requests by route, method and status */
  readonly requests = this.registry.register(new Counter('kiln_http_requests_total', 'HTTP requests by route, method and status code.'));
  /** request latency by route */
  readonly latency = this.registry.register(new Histogram('kiln_http_request_duration_seconds', 'Time from request to response, by route.', LATENCY_BUCKETS));
  /** images predicted */
  readonly images = this.registry.register(new Counter('kiln_images_total', 'Images (inputs) predicted.'));
  /** images per batch */
  readonly batchSize = this.registry.register(new Histogram('kiln_batch_size', 'Images per model batch.', BATCH_BUCKETS));
  /** batch run time */
  readonly batchLatency = this.registry.register(new Histogram('kiln_batch_duration_seconds', 'Time to run one batch (forward, softmax, split).', LATENCY_BUCKETS));
  /** batches that failed */
  readonly batchErrors = this.registry.register(new Counter('kiln_batch_errors_total', 'Batches whose forward failed.'));
  private batcher: DynamicBatcher | null = null;
  private inflight: () => number = () => 0;

  constructor() {
    const r = this.registry;
    r.register(new Gauge('kiln_queue_depth', 'Images waiting for a batch.', () => this.batcher?.queueDepth ?? 0));
    r.register(new Gauge('kiln_inflight_requests', 'HTTP requests being handled.', () => this.inflight()));
    r.register(new Gauge('kiln_inflight_batches', 'Batches running on the model.', () => this.batcher?.inFlightBatches ?? 0));
    r.register(new Gauge('kiln_tensors_alive', 'Live Kiln tensor handles in the process.', () => memory().numTensors));
    r.register(new Gauge('kiln_tensor_cpu_bytes', 'Bytes held by live CPU tensors.', () => memory().cpuBytes));
    r.register(new Gauge('kiln_tensor_cuda_bytes', 'Bytes held by live CUDA tensors.', () => memory().cudaBytes));
  }

  /** Connects the gauges to a batcher and an in-flight request count. */
  bind(batcher: DynamicBatcher, inflight: () => number): void {
    this.batcher = batcher;
    this.inflight = inflight;
  }

  /** Records one answered request. */
  request(route: string, method: string, status: number, seconds: number): void {
    this.requests.inc({ route, method, status: String(status) });
    this.latency.observe(seconds, { route });
  }

  /** Records one finished batch. */
  batch(b: BatchInfo): void {
    this.batchSize.observe(b.size);
    this.batchLatency.observe(b.seconds);
    if (b.error) this.batchErrors.inc();
  }

  /** The Prometheus text of every metric. */
  render(): string {
    return this.registry.render();
  }
}
