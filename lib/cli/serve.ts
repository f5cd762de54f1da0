/** `kiln serve`: an HTTP inference server with dynamic batching for a model written by `kiln train`. */
import { Device } from '../tensor/dtype';
import { serve } from '../serve/server';
import { FlagSpec, UsageError } from './args';
import { loadTrained } from './inference';

type Flags = Record<string, string | number | boolean | undefined>;

/** Options of `kiln serve`. */
export const SERVE_FLAGS: Record<string, FlagSpec> = {
  model: { type: 'string', help: 'a folder written by kiln train (or its model.safetensors)', meta: 'dir' },
  name: { type: 'string', default: 'model', help: 'the model name in routes (/v1/models/<name>:predict)' },
  host: { type: 'string', default: '127.0.0.1', help: 'interface to listen on (0.0.0.0: all)' },
  port: { type: 'int', min: 0, max: 65535, default: 8080, help: 'TCP port (0: any free port)' },
  'max-batch': { type: 'int', min: 1, default: 32, help: 'most images per model batch' },
  'max-delay-ms': { type: 'number', min: 0, default: 0, help: 'longest wait for a batch to fill after its first request (0: run when the model is free, batching what queued meanwhile)' },
  'max-queue': { type: 'int', min: 1, default: 1024, help: 'images waiting before requests are refused with 503' },
  'max-body': { type: 'int', min: 1, default: 10 * 2 ** 20, help: 'largest request body in bytes (413 above)' },
  device: { type: 'string', choices: ['cpu', 'cuda'], default: 'cpu', help: 'where to run' },
  precision: { type: 'string', choices: ['fp32', 'bf16', 'fp16'], default: 'fp32', help: 'weights and inputs in float32, bfloat16 or float16 (fp16: CUDA only)' },
  'channels-last': { type: 'boolean', help: 'channels-last (NHWC) weights and batches (faster convolutions on GPUs)' },
  top: { type: 'int', min: 1, default: 5, help: 'classes returned per image' },
  'timeout-ms': { type: 'int', min: 0, default: 0, help: 'per-request limit in ms, 504 after it (0: none)' },
  help: { type: 'boolean', alias: 'h', help: 'show this help' },
};

/** Runs `kiln serve` until SIGINT or SIGTERM, then drains in-flight requests and resolves to 0. */
export async function serveCommand(f: Flags, log: (s: string) => void): Promise<number> {
  const device = f.device as Device;
  if (f.precision === 'fp16' && device !== 'cuda') throw new UsageError("--precision fp16 needs --device cuda (on the CPU use bf16)");
  const m = loadTrained(f.model as string | undefined, device);
  const name = String(f.name);
  if (!/^[A-Za-z0-9._-]+$/.test(name)) throw new UsageError(`--name must use letters, digits, '.', '_' or '-' (got '${name}')`);
  let server;
  try {
    server = await serve(m.model, {
      name, host: String(f.host), port: f.port as number, device, top: f.top as number,
      maxBatchSize: f['max-batch'] as number, maxDelayMs: f['max-delay-ms'] as number, maxQueue: f['max-queue'] as number,
      maxBodyBytes: f['max-body'] as number, timeoutMs: f['timeout-ms'] as number,
      precision: f.precision as 'fp32' | 'bf16' | 'fp16', channelsLast: !!f['channels-last'],
      classNames: m.classNames, inputSize: m.size, channels: m.channels, mean: m.mean, std: m.std,
    });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') throw new UsageError(`--port ${f.port}: address ${f.host}:${f.port} is already in use`);
    if (code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') throw new UsageError(`--host ${f.host}: cannot listen on this address (${code})`);
    if (code === 'EACCES') throw new UsageError(`--port ${f.port}: permission denied (ports below 1024 need privileges)`);
    throw e;
  }
  const s = server;
  log(`kiln: serving '${name}' (${m.classNames.length} classes, input ${m.channels}×${m.size[0]}×${m.size[1]}) on ${device}, ${f.precision}${f['channels-last'] ? ', channels-last' : ''}; max batch ${s.batcher.maxBatchSize}, max delay ${s.batcher.maxDelayMs} ms`);
  log(`kiln: listening on ${s.url} — POST ${s.url}/predictions (image bytes or JSON), GET /health /ready /metrics /models; Ctrl-C stops`);
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      log(`kiln: ${signal}: finishing in-flight requests…`);
      s.close().then(resolve, resolve);
    };
    const onInt = () => stop('SIGINT');
    const onTerm = () => stop('SIGTERM');
    process.on('SIGINT', onInt);
    process.on('SIGTERM', onTerm);
  });
  m.model.dispose();
  log('kiln: stopped');
  return 0;
}
