/**
 * Inference serving under load: Kiln's server (`kiln serve`) with dynamic batching (waiting up to
 * 2 ms for a batch to fill, or 0 ms: batching only what queues while the previous batch runs),
 * the same with `--max-batch 1` and with `--optimize` (predictions on kiln.jit.optimizeForInference of the model), and a Python peer (bench/peers/serve.py: http.server.ThreadingHTTPServer, the
 * same simple-cnn and weights, one eval forward per request under torch.no_grad), each in its own
 * process, hit by N concurrent keep-alive clients POSTing PNG images from this process.
 * Throughput (requests/s) and p50/p99 latency; ratios against the Python peer. Then the same over gRPC (the Open
 * Inference Protocol's ModelInfer, one PNG per call as BYTES): `kiln serve --grpc-port` against a Python grpcio peer
 * (bench/peers/serve_grpc.py, the same model; needs python3-grpcio, python3-grpc-tools, python3-protobuf), each
 * client on its own channel.
 * `--quick`: shorter runs. BENCH_SERVE_SECONDS, BENCH_SERVE_CLIENTS (e.g. "1,8,32") override.
 */
import { callerEnv } from '../lib/native';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawn, ChildProcess } from 'child_process';
import sharp from 'sharp';
import * as kiln from '../lib';
import { grpcClient, InferenceClient, OPEN_INFERENCE_PROTO } from '../lib/serve';
import { pythonWithTorch, machine, table, record, ROOT } from './harness';

const QUICK = process.argv.includes('--quick');
const SECONDS = Number(process.env.BENCH_SERVE_SECONDS ?? (QUICK ? 2 : 5));
const CLIENTS = (process.env.BENCH_SERVE_CLIENTS ?? (QUICK ? '1,16' : '1,8,32')).split(',').map(Number);
const DEVICE = (process.env.BENCH_DEVICE ?? 'cpu') as 'cpu' | 'cuda';

interface Load { rps: number; p50: number; p99: number; errors: number; meanBatch?: number }

/** Starts a server process and resolves to its URL (the first group of `ready` in its output: its "listening on URL" line). */
function start(cmd: string, args: string[], ready = /listening on (http:\/\/[\d.:]+)/): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: callerEnv() }); // Kiln's servers set their own
  let out = '';
  return new Promise((resolve, reject) => {
    const onData = (d: Buffer) => {
      out += d;
      const m = ready.exec(out);
      if (m) resolve({ url: m[1], child });
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('exit', (code) => reject(new Error(`${cmd} ${args.join(' ')} exited (${code}): ${out.slice(-500)}`)));
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const closed = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await closed;
}

async function predict(url: string, png: Buffer): Promise<{ status: number; body: string }> {
  const r = await fetch(`${url}/predictions`, { method: 'POST', body: png, headers: { 'content-type': 'image/png' } });
  return { status: r.status, body: await r.text() };
}

/** `clients` loops POSTing images for `seconds` after a warm-up; latencies in ms. */
function load(url: string, images: Buffer[], clients: number, seconds: number): Promise<Load> {
  return loadWith((i) => predict(url, images[i % images.length]).then((r) => r.status === 200), clients, seconds);
}

/** `clients` loops of `call(i, client)` (true: answered) for `seconds` after a warm-up; latencies in ms. */
async function loadWith(call: (i: number, client: number) => Promise<boolean>, clients: number, seconds: number): Promise<Load> {
  const warmEnd = performance.now() + Math.min(1000, seconds * 300);
  const end = warmEnd + seconds * 1000;
  const lat: number[] = [];
  let errors = 0, done = 0;
  const client = async (c: number) => {
    for (let i = c; performance.now() < end; i += clients) {
      const t0 = performance.now();
      const ok = await call(i, c).catch(() => false);
      const t1 = performance.now();
      if (t0 < warmEnd || t1 > end) continue;
      if (!ok) errors++;
      else {
        done++;
        lat.push(t1 - t0);
      }
    }
  };
  await Promise.all(Array.from({ length: clients }, (_, c) => client(c)));
  lat.sort((a, b) => a - b);
  const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] ?? NaN;
  return { rps: done / seconds, p50: q(0.5), p99: q(0.99), errors };
}

async function batchStats(url: string): Promise<{ sum: number; count: number }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const num = (re: RegExp) => Number(re.exec(text)?.[1] ?? 0);
  // one model: one series, labelled by model and version
  return { sum: num(/^kiln_batch_size_sum(?:\{[^}]*\})? (\S+)/m), count: num(/^kiln_batch_size_count(?:\{[^}]*\})? (\S+)/m) };
}

export async function run(): Promise<void> {
  const threads = kiln.info().numThreads;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-bench-serve-'));
  // the model `kiln train --data shapes` builds (simple-cnn, width 32, 32×32 RGB), untrained weights
  kiln.manualSeed(0);
  const m = kiln.models.simpleCnn({ numClasses: 3, inChannels: 3, width: 32 });
  kiln.saveModel(path.join(dir, 'model.safetensors'), m, {
    classNames: JSON.stringify(['circle', 'square', 'triangle']), inputSize: '[32,32]', channels: '3',
    mean: JSON.stringify([0.5, 0.5, 0.5]), std: JSON.stringify([0.25, 0.25, 0.25]), dataset: 'shapes',
  });
  m.dispose();
  // 64 distinct 40×40 PNGs (resized to 32×32 by both servers)
  const images = await Promise.all(Array.from({ length: 64 }, (_, k) => {
    const raw = Buffer.alloc(40 * 40 * 3);
    for (let i = 0; i < raw.length; i++) raw[i] = (i * (k + 3) * 2654435761) >>> 24;
    return sharp(raw, { raw: { width: 40, height: 40, channels: 3 } }).png().toBuffer();
  }));
  const bin = path.join(ROOT, 'bin', 'kiln.js');
  const kilnArgs = (maxBatch: number, delay: number) => [bin, 'serve', '--model', dir, '--port', '0', '--device', DEVICE, '--max-batch', String(maxBatch), '--max-delay-ms', String(delay), '--max-queue', '4096'];
  const py = pythonWithTorch();
  const servers: { name: string; cmd: string; args: string[] }[] = [
    { name: 'Kiln, dynamic batching (max 32, 2 ms)', cmd: process.execPath, args: kilnArgs(32, 2) },
    { name: 'Kiln, dynamic batching (max 32, 0 ms)', cmd: process.execPath, args: kilnArgs(32, 0) },
    { name: 'Kiln, maxBatchSize 1', cmd: process.execPath, args: kilnArgs(1, 0) },
    { name: 'Kiln, --optimize (max 32, 0 ms)', cmd: process.execPath, args: [...kilnArgs(32, 0), '--optimize'] },
  ];
  let ort = false;
  try {
    require.resolve('onnxruntime-node');
    ort = DEVICE === 'cpu';
  } catch {
    console.error('onnxruntime-node is not installed: the --runtime onnx row is skipped');
  }
  if (ort) servers.push({ name: 'Kiln, ONNX Runtime (max 32, 0 ms)', cmd: process.execPath, args: [...kilnArgs(32, 0), '--runtime', 'onnx'] });
  if (py) servers.push({ name: 'Python ThreadingHTTPServer + torch', cmd: py, args: [path.join(ROOT, 'bench', 'peers', 'serve.py'), dir, '0', String(threads), DEVICE] });
  else console.error('no Python with torch: the peer is skipped');

  const results: Load[][] = [];
  const answers: string[] = [];
  for (const s of servers) {
    const { url, child } = await start(s.cmd, s.args);
    try {
      answers.push((await predict(url, images[0])).body);
      const row: Load[] = [];
      for (const n of CLIENTS) {
        const before = s.cmd === py ? null : await batchStats(url);
        const r = await load(url, images, n, SECONDS);
        if (before) {
          const after = await batchStats(url);
          r.meanBatch = (after.sum - before.sum) / Math.max(1, after.count - before.count);
        }
        row.push(r);
        console.error(`${s.name}, ${n} clients: ${r.rps.toFixed(0)} req/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms${r.meanBatch ? `, mean batch ${r.meanBatch.toFixed(1)}` : ''}${r.errors ? `, ${r.errors} errors` : ''}`);
      }
      results.push(row);
    } finally {
      await stop(child);
    }
  }
  // the servers agree: same weights, same preprocessing → same top class and probability
  const top = answers.map((a) => JSON.parse(a).predictions[0].top[0] as { class: string; probability: number });
  const agree = top.every((t) => t.class === top[0].class && Math.abs(t.probability - top[0].probability) < 1e-4);
  const pyIndex = servers.findIndex((s) => s.cmd === py);
  const peer = pyIndex >= 0 ? results[pyIndex] : null;
  const rows = CLIENTS.flatMap((n, j) => servers.map((s, i) => {
    const r = results[i][j];
    return [String(n), s.name, r.rps.toFixed(0), r.p50.toFixed(2), r.p99.toFixed(2), r.meanBatch ? r.meanBatch.toFixed(1) : '—',
      peer ? (r.rps / peer[j].rps).toFixed(2) : 'n/a', peer ? (r.p99 / peer[j].p99).toFixed(2) : 'n/a', String(r.errors)];
  }));
  const t = table(['clients', 'server', 'req/s', 'p50 ms', 'p99 ms', 'mean batch', 'throughput ÷ Python', 'p99 ÷ Python', 'errors'], rows);
  console.log(t);
  console.log(`first answers agree across servers: ${agree} (${top.map((x) => `${x.class} ${x.probability.toFixed(6)}`).join(' / ')})`);
  record(`Serving (${DEVICE})`, `${new Date().toISOString().slice(0, 10)} — ${machine()}; simple-cnn width 32, 40×40 PNG → 32×32 RGB, 3 classes; ${threads} intra-op threads for both; each server in its own process, the clients (Node fetch, keep-alive) in the bench process on the same cores; ${SECONDS} s per point after a warm-up; the Python peer keeps connections alive and sets TCP_NODELAY. Answers agree across servers: ${agree}.\n\n${t}`);
  await overGrpc(bin, dir, images, threads, py);
  await duringExplanations(bin, dir, images, threads);
  fs.rmSync(dir, { recursive: true, force: true });
}

/**
 * The same model over gRPC: `kiln serve --grpc-port 0` (max batch 32, 0 ms) against the Python grpcio peer, N
 * concurrent clients each on its own channel calling ModelInfer with one PNG (BYTES) and asking for probabilities.
 */
async function overGrpc(bin: string, dir: string, images: Buffer[], threads: number, py: string | null): Promise<void> {
  const proto = path.join(dir, 'inference.proto');
  fs.writeFileSync(proto, OPEN_INFERENCE_PROTO);
  const peerOk = !!py && (await new Promise<boolean>((resolve) => spawn(py, ['-c', 'import grpc, grpc_tools, google.protobuf'], { stdio: 'ignore' }).on('exit', (c) => resolve(c === 0))));
  if (!peerOk) console.error('no Python with grpcio, grpc_tools and protobuf (python3-grpcio python3-grpc-tools python3-protobuf): the gRPC peer is skipped');
  const servers = [
    { name: 'Kiln gRPC, dynamic batching (max 32, 0 ms)', cmd: process.execPath, args: [bin, 'serve', '--model', dir, '--port', '0', '--grpc-port', '0', '--device', DEVICE, '--max-batch', '32', '--max-delay-ms', '0', '--max-queue', '4096'], ready: /over gRPC on (\S+) / },
    ...(peerOk ? [{ name: 'Python grpcio + torch', cmd: py!, args: [path.join(ROOT, 'bench', 'peers', 'serve_grpc.py'), dir, proto, '0', String(threads), DEVICE], ready: /listening on grpc:\/\/(\S+)/ }] : []),
  ];
  const request = (png: Buffer) => ({ model_name: 'model', inputs: [{ name: 'input', datatype: 'BYTES', shape: [1], contents: { bytes_contents: [png] } }], outputs: [{ name: 'probabilities' }] });
  const results: Load[][] = [];
  const answers: number[][] = [];
  for (const s of servers) {
    const { url: address, child } = await start(s.cmd, s.args, s.ready);
    try {
      const first = grpcClient(address);
      answers.push((await first.modelInfer(request(images[0]))).outputs[0].contents.fp32_contents);
      first.close();
      const row: Load[] = [];
      for (const n of CLIENTS) {
        const clients: InferenceClient[] = Array.from({ length: n }, () => grpcClient(address));
        try {
          const r = await loadWith((i, c) => clients[c].modelInfer(request(images[i % images.length])).then((a) => a.outputs.length === 1), n, SECONDS);
          row.push(r);
          console.error(`${s.name}, ${n} clients: ${r.rps.toFixed(0)} req/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms${r.errors ? `, ${r.errors} errors` : ''}`);
        } finally {
          for (const c of clients) c.close();
        }
      }
      results.push(row);
    } finally {
      await stop(child);
    }
  }
  const agree = answers.every((a) => a.length === answers[0].length && a.every((v, i) => Math.abs(v - answers[0][i]) < 1e-4));
  const peer = results.length > 1 ? results[1] : null;
  const rows = CLIENTS.flatMap((n, j) => servers.map((s, i) => {
    const r = results[i][j];
    return [String(n), s.name, r.rps.toFixed(0), r.p50.toFixed(2), r.p99.toFixed(2), peer ? (r.rps / peer[j].rps).toFixed(2) : 'n/a', peer ? (r.p99 / peer[j].p99).toFixed(2) : 'n/a', String(r.errors)];
  }));
  const t = table(['clients', 'server', 'calls/s', 'p50 ms', 'p99 ms', 'throughput ÷ Python', 'p99 ÷ Python', 'errors'], rows);
  console.log(t);
  console.log(`first answers agree across servers: ${agree} (${answers.map((a) => a.map((v) => v.toFixed(6)).join(' ')).join(' / ')})`);
  record(`Serving over gRPC (${DEVICE})`, `${new Date().toISOString().slice(0, 10)} — ${machine()}; the model above; ModelInfer with one 40×40 PNG as BYTES → FP32 probabilities; ${threads} intra-op threads for both; each server in its own process, each client on its own grpc-js channel in the bench process on the same cores; ${SECONDS} s per point after a warm-up; the peer is grpcio's server (16 worker threads) with Python code generated from Kiln's .proto. Answers agree across servers: ${agree}.\n\n${t}`);
}

/**
 * Predictions while explanations run: 4 prediction clients and one client asking for integrated gradients
 * (64 steps) back to back, against `kiln serve --explain-thread main` (explanations block the event loop while
 * they run) and `--explain-thread worker` (they run on a worker thread). Prediction latency and both rates.
 */
async function duringExplanations(bin: string, dir: string, images: Buffer[], threads: number): Promise<void> {
  const rows: string[][] = [];
  const measured: { mode: string; pred: Load; explained: number }[] = [];
  for (const mode of ['main', 'worker']) {
    const { url, child } = await start(process.execPath, [bin, 'serve', '--model', dir, '--port', '0', '--device', DEVICE, '--explain-thread', mode]);
    try {
      const explain = () => fetch(`${url}/explanations?method=ig&steps=64&format=json`, { method: 'POST', body: images[0], headers: { 'content-type': 'image/png' } }).then((r) => r.text());
      await explain(); // the worker (or the first graph) is warm
      let explained = 0;
      let stopExplaining = false;
      const explainer = (async () => {
        while (!stopExplaining) {
          await explain();
          explained++;
        }
      })();
      const t0 = performance.now();
      const pred = await load(url, images, 4, SECONDS);
      const seconds = (performance.now() - t0) / 1000;
      stopExplaining = true;
      await explainer;
      measured.push({ mode, pred, explained: explained / seconds });
      console.error(`explain-thread ${mode}: predictions ${pred.rps.toFixed(0)} req/s, p50 ${pred.p50.toFixed(2)} ms, p99 ${pred.p99.toFixed(2)} ms; ${(explained / seconds).toFixed(1)} explanations/s`);
    } finally {
      await stop(child);
    }
  }
  const main = measured[0];
  for (const m of measured)
    rows.push([`--explain-thread ${m.mode}`, m.pred.rps.toFixed(0), m.pred.p50.toFixed(2), m.pred.p99.toFixed(2), m.explained.toFixed(1),
      (m.pred.p99 / main.pred.p99).toFixed(2), (m.pred.rps / main.pred.rps).toFixed(2), String(m.pred.errors)]);
  const t = table(['server', 'predictions/s', 'p50 ms', 'p99 ms', 'explanations/s', 'p99 ÷ main', 'predictions/s ÷ main', 'errors'], rows);
  console.log(t);
  record(`Serving while explaining (${DEVICE})`, `${new Date().toISOString().slice(0, 10)} — ${machine()}; the model above; 4 prediction clients and 1 client asking for integrated gradients (64 steps, JSON) back to back, ${SECONDS} s; ${threads} intra-op threads. The peer is the same server with explanations on the main thread.\n\n${t}`);
}

if (require.main === module) run().catch((e) => { console.error(e); process.exit(1); });
