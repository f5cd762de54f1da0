/** Serving: the dynamic batcher, the HTTP server (predictions, errors, metrics, memory, close) and `kiln serve`. */
import * as fs from 'fs';
import * as http from 'http';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { spawn, spawnSync } from 'child_process';
import { expect } from 'chai';
import sharp from 'sharp';
import * as kiln from '../lib';
import { DynamicBatcher, Server, serve, BatchModel } from '../lib/serve';
import * as memoryModule from '../lib/tensor/memory';
import { run } from '../lib/cli/main';
import { expectRejects, expectKilnError, expectClose, gc } from './helpers';

const BIN = path.resolve(__dirname, '..', '..', 'bin', 'kiln.js');
const CLASSES = ['circle', 'square', 'triangle'];
const MEAN = [0.5, 0.45, 0.4], STD = [0.25, 0.2, 0.3];

/** A seeded RGB image of w×h encoded as `format`. */
async function image(seed: number, w = 40, h = 50, format: 'png' | 'jpeg' | 'webp' = 'png'): Promise<Buffer> {
  const raw = Buffer.alloc(w * h * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = (i * (seed + 3) * 2654435761) >>> 24;
  return sharp(raw, { raw: { width: w, height: h, channels: 3 } }).toFormat(format).toBuffer();
}

/** A gate a fake model waits on, to hold batches in flight. */
function gated(model: kiln.nn.Module): BatchModel & { calls: number[]; hold(): void; release(): void } {
  let gate: Promise<void> | null = null, open = () => {};
  return {
    calls: [],
    hold() { gate = new Promise((r) => (open = r)); },
    release() { gate = null; open(); },
    async forwardAsync(x: kiln.Tensor) {
      this.calls.push(x.shape[0]);
      if (gate) await gate;
      return model.forwardAsync(x);
    },
  };
}

type Body = string | Buffer;
const until = async (cond: () => boolean) => { while (!cond()) await new Promise((r) => setTimeout(r, 2)); };

/** One request; the JSON answer with its status and headers. */
async function call(u: string, body?: Body, type = 'image/png', method = 'POST') {
  const r = await fetch(u, { method, body, headers: body === undefined ? {} : { 'content-type': type } });
  return { status: r.status, headers: r.headers, body: (await r.json()) as Record<string, any> };
}

/** The probabilities of one prediction's top list, by class index (NaN where absent). */
function probsOf(pred: { top: { index: number; probability: number }[] }, n: number): number[] {
  const p = new Array(n).fill(NaN);
  for (const t of pred.top) p[t.index] = t.probability;
  return p;
}

/** Starts `kiln serve …` and resolves once stdout has matched every pattern (first groups returned). */
function startCli(args: string[], patterns: RegExp[]): Promise<{ child: ReturnType<typeof spawn>; found: string[]; output: () => string }> {
  const child = spawn(process.execPath, [BIN, 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '', err = '';
  child.stderr!.on('data', (d) => (err += d));
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (d) => {
      out += d;
      const found = patterns.map((re) => re.exec(out)?.[1]);
      if (found.every((f) => f !== undefined)) resolve({ child, found: found as string[], output: () => out + err });
    });
    child.on('exit', () => reject(new Error(`kiln serve exited early: ${out}${err}`)));
  });
}

/** Asserts that as many tensors and CPU bytes are alive as in `before` (after a GC). */
function expectMemoryAt(before: kiln.MemoryInfo): void {
  gc();
  const after = kiln.memory();
  expect(after.numTensors, 'live tensors').to.equal(before.numTensors);
  expect(after.cpuBytes, 'live CPU bytes').to.equal(before.cpuBytes);
}

/** Sends SIGTERM and resolves to the exit code. */
function stopCli(child: ReturnType<typeof spawn>): Promise<number | null> {
  child.kill('SIGTERM');
  return new Promise((resolve) => child.on('close', resolve));
}

describe('serve', function () {
  this.timeout(60000);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-serve-'));
  let model: kiln.nn.Module;
  let metadata: Record<string, string>;

  before(() => {
    kiln.manualSeed(1);
    const m = kiln.models.simpleCnn({ numClasses: 3, inChannels: 3, width: 8 });
    kiln.saveModel(path.join(dir, 'model.safetensors'), m, {
      classNames: JSON.stringify(CLASSES), inputSize: JSON.stringify([32, 32]), channels: '3',
      mean: JSON.stringify(MEAN), std: JSON.stringify(STD), dataset: 'shapes', config: JSON.stringify({ seed: 0 }),
    });
    m.dispose();
    ({ model, metadata } = kiln.loadModel(path.join(dir, 'model.safetensors')));
    model.eval();
  });
  after(() => model.dispose());

  /** Probabilities of `kiln predict`'s path: decode → resize → /255 → normalize → model.call → softmax. */
  async function directOf(m: kiln.nn.Module, bytes: Buffer, size: number, channels: 1 | 3, mean: number[], std: number[]): Promise<number[]> {
    const d = await kiln.data.decodeImage(bytes, { size: [size, size], channels });
    const norm = kiln.data.normalize(mean, std);
    const p = kiln.tidy(() => kiln.noGrad(() => m.call(norm(kiln.tensor(d.data, { shape: [1, channels, size, size] }).float().div(255))).softmax(1)));
    const v = Array.from(p.dataSync() as Float32Array);
    p.dispose();
    return v;
  }
  const direct = (bytes: Buffer) => directOf(model, bytes, 32, 3, MEAN, STD);

  describe('DynamicBatcher', () => {
    const inputs = (n: number) => Array.from({ length: n }, (_, i) => kiln.tidy(() => kiln.randn([3, 32, 32]).add(i)));

    it('refuses delays and timeouts a timer cannot wait (past 2^31 − 1 ms setTimeout fired every 1 ms, for good); a missing modelStore; long gRPC details are cut', async () => {
      for (const k of ['maxDelayMs', 'timeoutMs'] as const)
        for (const v of [2 ** 31, 1e300]) expectKilnError(() => new DynamicBatcher(model, { [k]: v }), 'INVALID_ARGUMENT', k, '2147483647');
      await expectRejects(serve({ port: 0, managementPort: 0, modelStore: '/no/such/store' }), 'INVALID_ARGUMENT', 'modelStore', 'not a folder');
      const { grpcStatus } = await import('../lib/serve/grpc');
      const { HttpError } = await import('../lib/serve/inputs');
      // a 100 KB name quoted in a NOT_FOUND passed HTTP/2's header limit and broke the client's channel
      const s = grpcStatus(new HttpError(404, `model '${'x'.repeat(100000)}' is not served`, 'MODEL_NOT_FOUND'));
      expect(s.details.length).to.be.at.most(1025);
      expect(s.details.startsWith("model 'xxx")).to.equal(true);
    });

    it('runs concurrent submits as one forward and gives each caller its own row', async () => {
      const g = gated(model);
      const b = new DynamicBatcher(g, { maxBatchSize: 8, maxDelayMs: 1000 });
      const xs = inputs(8);
      const rows = await Promise.all(xs.map((x) => b.submit(x)));
      expect(g.calls).to.deep.equal([8]); // full batch: ran at once, not after maxDelayMs
      for (let i = 0; i < 8; i++) {
        expect(rows[i].shape).to.deep.equal([3]);
        const want = kiln.tidy(() => kiln.noGrad(() => model.call(xs[i].unsqueeze(0)).squeeze(0)));
        expectClose(rows[i], Array.from(want.dataSync() as Float32Array), 1e-4, 1e-5);
        want.dispose();
      }
      const stacked = kiln.tidy(() => kiln.stack(xs.slice(0, 3)));
      const many = await b.submit(stacked);
      expect(many.shape).to.deep.equal([3, 3]);
      [...xs, ...rows, many, stacked].forEach((t) => t.dispose());
      await b.close();
    });

    it('splits at maxBatchSize, groups by input shape, and waits at most maxDelayMs for a partial batch', async () => {
      const g = gated(model);
      const b = new DynamicBatcher(g, { maxBatchSize: 4, maxDelayMs: 1 });
      const xs = [...inputs(10), kiln.randn([3, 40, 40])];
      const rows = await Promise.all(xs.map((x) => b.submit(x)));
      expect(g.calls.reduce((a, c) => a + c, 0)).to.equal(11);
      expect(Math.max(...g.calls)).to.be.at.most(4);
      expect(g.calls).to.include(1); // the 40×40 image ran in its own batch
      [...xs, ...rows].forEach((t) => t.dispose());
      await b.close();
    });

    it("a batch's error reaches exactly that batch's callers", async () => {
      let n = 0;
      const failing: BatchModel = { forwardAsync: (x) => (++n === 1 ? Promise.reject(new kiln.KilnError('boom in batch 1', 'TORCH')) : model.forwardAsync(x)) };
      const b = new DynamicBatcher(failing, { maxBatchSize: 2, maxDelayMs: 1e6 }); // full batches of 2 run at once
      const xs = inputs(4);
      const res = await Promise.allSettled(xs.map((x) => b.submit(x)));
      expect(res.map((r) => r.status)).to.deep.equal(['rejected', 'rejected', 'fulfilled', 'fulfilled']);
      expect(String((res[0] as PromiseRejectedResult).reason.message)).to.equal('boom in batch 1');
      res.forEach((r) => r.status === 'fulfilled' && r.value.dispose());
      xs.forEach((x) => x.dispose());
      await b.close();
    });

    it('rejects with OVERLOADED past maxQueue, TIMEOUT past timeoutMs, and runs 2 batches at once when allowed', async () => {
      const g = gated(model);
      g.hold();
      const b = new DynamicBatcher(g, { maxBatchSize: 1, maxDelayMs: 0, maxQueue: 2, maxConcurrentBatches: 2 });
      const xs = inputs(5);
      const ps = xs.slice(0, 4).map((x) => b.submit(x));
      await until(() => b.inFlightBatches === 2);
      expect(b.queueDepth).to.equal(2);
      await expectRejects(b.submit(xs[4]), 'OVERLOADED', 'overloaded', 'maxQueue 2');
      const slow = b.submit(xs[4], { timeoutMs: 5 });
      await expectRejects(slow, 'OVERLOADED'); // still full: refused, not queued
      g.release();
      (await Promise.all(ps)).forEach((t) => t.dispose());
      g.hold();
      const running = b.submit(xs[0], { timeoutMs: 20 });
      await expectRejects(running, 'TIMEOUT', 'timed out after 20 ms while its batch was running');
      const b1 = new DynamicBatcher(g, { maxBatchSize: 1, maxDelayMs: 0, timeoutMs: 20 });
      const first = b1.submit(xs[1], { timeoutMs: 0 });
      await expectRejects(b1.submit(xs[2]), 'TIMEOUT', 'waiting in the queue');
      g.release();
      (await first).dispose();
      xs.forEach((x) => x.dispose());
      await Promise.all([b.close(), b1.close()]);
    });

    it('close() runs what is queued without waiting, then refuses; close({cancel}) rejects the queue', async () => {
      const b = new DynamicBatcher(model, { maxBatchSize: 64, maxDelayMs: 1e6 });
      const xs = inputs(3);
      const ps = xs.map((x) => b.submit(x));
      await b.close();
      (await Promise.all(ps)).forEach((t) => t.dispose());
      await expectRejects(b.submit(xs[0]), 'CLOSED', 'closed');
      const c = new DynamicBatcher(model, { maxDelayMs: 1e6 });
      const p = c.submit(xs[0]);
      await c.close({ cancel: true });
      await expectRejects(p, 'CLOSED', 'closed before this request ran');
      xs.forEach((x) => x.dispose());
    });

    it('survives an onBatch callback that throws (a warning, not a crash)', async () => {
      const warnings: string[] = [];
      const onWarn = (w: Error) => warnings.push(w.message);
      process.on('warning', onWarn);
      const b = new DynamicBatcher(model, { onBatch: () => { throw new Error('metrics sink failed'); } });
      try {
        const xs = inputs(3);
        for (const x of xs) (await b.submit(x)).dispose();
        xs.forEach((x) => x.dispose());
        await new Promise((r) => setImmediate(r));
        expect(warnings.some((w) => w.includes('metrics sink failed'))).to.equal(true);
      } finally {
        process.off('warning', onWarn);
        await b.close();
      }
    });

    it('rejects bad arguments with clear errors', async () => {
      expectKilnError(() => new DynamicBatcher(null as never), 'INVALID_ARGUMENT', 'model', 'forwardAsync');
      expectKilnError(() => new DynamicBatcher(model, { maxBatchSize: 0 }), 'INVALID_ARGUMENT', 'maxBatchSize', 'positive integer');
      expectKilnError(() => new DynamicBatcher(model, { maxDelayMs: -1 }), 'INVALID_ARGUMENT', 'maxDelayMs');
      const b = new DynamicBatcher(model);
      await expectRejects(b.submit('x' as never), 'INVALID_ARGUMENT', 'input', 'Tensor');
      const flat = kiln.zeros([3, 4]);
      await expectRejects(b.submit(flat), 'INVALID_ARGUMENT', 'input', '[C, H, W]', 'shape [3, 4]');
      flat.dispose();
      await b.close();
    });

    it('keeps memory flat over thousands of requests (including disposed inputs and timeouts)', async () => {
      const b = new DynamicBatcher(model, { maxBatchSize: 16, maxDelayMs: 0 });
      // earlier tests' unreachable tensors go now (their finalizers run a task after the collection), not inside the measurement
      gc();
      await new Promise((r) => setImmediate(r));
      const before = kiln.memory();
      for (let round = 0; round < 40; round++) {
        const xs = inputs(50);
        const ps = xs.map((x, i) => b.submit(x, { timeoutMs: i % 10 === 0 ? 1e-3 : 0 }));
        xs.forEach((x) => x.dispose()); // safe: the batcher keeps its own reference
        for (const r of await Promise.allSettled(ps)) if (r.status === 'fulfilled') r.value.dispose();
      }
      await b.close();
      expectMemoryAt(before);
    });
  });

  describe('HTTP server', () => {
    let server: Server;
    let url: string;
    const post = async (p: string, body: Body | undefined, type?: string) => {
      const r = await fetch(url + p, { method: 'POST', body, headers: type ? { 'content-type': type } : {} });
      return { status: r.status, headers: r.headers, body: (await r.json()) as Record<string, any> };
    };
    const probs = (pred: { top: { index: number; probability: number }[] }) => probsOf(pred, 3);
    before(async () => {
      server = await serve(model, { metadata, name: 'shapes', port: 0, maxBatchSize: 16, maxDelayMs: 25, maxBodyBytes: 64 * 1024 });
      url = server.url;
    });
    after(() => server.close());

    it('answers PNG, JPEG and WebP bytes with the probabilities of a direct model.call, on every predict route', async () => {
      for (const format of ['png', 'jpeg', 'webp'] as const) {
        const bytes = await image(7, 40, 50, format);
        const want = await direct(bytes);
        for (const route of ['/predictions', '/predictions/shapes', '/v1/models/shapes:predict']) {
          const r = await post(route, bytes, format === 'jpeg' ? 'image/jpeg' : `image/${format}`);
          expect(r.status, JSON.stringify(r.body)).to.equal(200);
          expect(r.body.model).to.equal('shapes');
          const top = r.body.predictions[0].top;
          expect(top).to.have.length(3);
          expect(top.map((t: { class: string }) => t.class)).to.have.members(CLASSES);
          expect(top[0].probability).to.be.at.least(top[1].probability);
          expectClose(probs(r.body.predictions[0]), want, 1e-4, 1e-6);
        }
      }
      const two = await post('/predictions?top=2', await image(7), 'application/octet-stream');
      expect(two.body.predictions[0].top).to.have.length(2);
    });

    it('serves a bfloat16, channels-last copy of the model with nearly the float32 answers; fp16 needs CUDA', async () => {
      const low = kiln.loadModel(path.join(dir, 'model.safetensors')).model;
      const s2 = await serve(low, { metadata, port: 0, precision: 'bf16', channelsLast: true });
      try {
        expect(low.parameters()[0].dtype).to.equal('bfloat16');
        const bytes = await image(7);
        const r = await fetch(s2.url + '/predictions', { method: 'POST', body: bytes, headers: { 'content-type': 'image/png' } });
        expect(r.status).to.equal(200);
        const got = probs(((await r.json()) as Record<string, any>).predictions[0]);
        expectClose(got, await direct(bytes), 0, 0.03); // bfloat16 keeps 8 bits of mantissa
      } finally {
        await s2.close();
        low.dispose();
      }
      if (!kiln.info().cudaAvailable) expectKilnError(() => new Server(model, { metadata, precision: 'fp16' }), 'INVALID_ARGUMENT', 'fp16', 'CUDA');
      expectKilnError(() => new Server(model, { metadata, precision: 'fp8' as 'fp16' }), 'INVALID_ARGUMENT', 'precision');
    });

    it('answers JSON instances: base64 strings, {"b64"} objects and preprocessed float arrays', async () => {
      const a = await image(1), c = await image(2, 32, 32);
      const d = await kiln.data.decodeImage(c, { size: [32, 32], channels: 3 });
      const arr = kiln.tidy(() => kiln.data.normalize(MEAN, STD)(kiln.tensor(d.data, { shape: [1, 3, 32, 32] }).float().div(255)).squeeze(0));
      const nested = arr.arraySync();
      arr.dispose();
      const r = await post('/predictions', JSON.stringify({ instances: [a.toString('base64'), { b64: c.toString('base64') }, nested] }), 'application/json');
      expect(r.status, JSON.stringify(r.body)).to.equal(200);
      expect(r.body.predictions).to.have.length(3);
      expectClose(probs(r.body.predictions[0]), await direct(a), 1e-4, 1e-6);
      expectClose(probs(r.body.predictions[1]), await direct(c), 1e-4, 1e-6);
      expectClose(probs(r.body.predictions[2]), await direct(c), 1e-4, 1e-6);
    });

    it('batches concurrent requests (batch-size metric > 1) and gives each caller its own answer', async () => {
      const imgs = await Promise.all(Array.from({ length: 24 }, (_, i) => image(100 + i, 32 + (i % 5), 32)));
      const wants = await Promise.all(imgs.map(direct));
      const res = await Promise.all(imgs.map((b) => post('/predictions', b, 'image/png')));
      res.forEach((r, i) => expectClose(probs(r.body.predictions[0]), wants[i], 1e-4, 1e-6));
      const text = await (await fetch(url + '/metrics')).text();
      const count = Number(/^kiln_batch_size_count\{model="shapes",version="1"\} (\d+)/m.exec(text)![1]);
      const ones = Number(/^kiln_batch_size_bucket\{model="shapes",version="1",le="1"\} (\d+)/m.exec(text)![1]);
      expect(count - ones, text).to.be.greaterThan(0); // some batch held more than one image
      const sum = Number(/^kiln_batch_size_sum\{model="shapes",version="1"\} (\d+)/m.exec(text)![1]);
      expect(count, 'batches').to.be.lessThan(sum); // fewer batches than images
    });

    it('answers every bad request with the right status and a message naming the problem', async () => {
      const cases: [string, Body | undefined, string | undefined, number, RegExp][] = [
        ['/predictions', '{"instances": [1,', 'application/json', 400, /malformed JSON/],
        ['/predictions', '{"inputs": []}', 'application/json', 400, /"instances" array.*keys \[inputs\]/],
        ['/predictions', '{"instances": []}', 'application/json', 400, /"instances" is empty/],
        ['/predictions', Buffer.from('not an image at all'), 'image/png', 400, /request body: cannot decode image/],
        ['/predictions', (await image(3)).subarray(0, 200), 'image/png', 400, /cannot decode image/],
        ['/predictions', Buffer.alloc(0), 'image/jpeg', 400, /empty body/],
        ['/predictions', JSON.stringify({ instances: [[[[0]]]] }), 'application/json', 400, /instances\[0\]: wrong shape \[1, 1, 1\]: the model takes \[3, 32, 32\]/],
        ['/predictions', JSON.stringify({ instances: ['@@@not base64'] }), 'application/json', 400, /instances\[0\]: not valid base64/],
        ['/predictions', JSON.stringify({ instances: [{ b64: Buffer.from('junk').toString('base64') }] }), 'application/json', 400, /instances\[0\]: cannot decode image/],
        ['/predictions', JSON.stringify({ instances: [true] }), 'application/json', 400, /instances\[0\]: expected a nested array.*got boolean true/],
        ['/predictions?top=0', await image(1), 'image/png', 400, /top must be a positive integer/],
        ['/predictions', Buffer.alloc(100 * 1024), 'image/png', 413, /too large: content-length 102400 bytes exceeds the limit of 65536/],
        ['/predictions', 'hello', 'text/plain', 415, /unsupported media type 'text\/plain'/],
        ['/predictions', Buffer.from('x'), undefined, 415, /no content-type header/],
        ['/v1/models/other:predict', await image(1), 'image/png', 404, /no model named 'other'.*serves 'shapes'/],
        ['/v1/models/%ZZ:predict', await image(1), 'image/png', 404, /no model named '%ZZ'/],
        ['/nope', 'x', 'text/plain', 404, /no route POST \/nope/],
        ['/health', 'x', 'text/plain', 405, /POST \/health is not allowed: use GET/],
      ];
      for (const [p, body, type, status, re] of cases) {
        const r = await post(p, body, type);
        expect(r.status, `${p} ${type}: ${JSON.stringify(r.body)}`).to.equal(status);
        expect(r.body.error).to.match(re);
        expect(r.body.code).to.be.a('string');
      }
      const get = await fetch(url + '/predictions');
      expect(get.status).to.equal(405);
      expect(get.headers.get('allow')).to.equal('POST');
      // a chunked body without content-length is cut off at the limit too
      const chunked = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = http.request(url + '/predictions', { method: 'POST', headers: { 'content-type': 'image/png' } }, (res) => {
          let body = '';
          res.on('data', (d) => (body += d)).on('end', () => resolve({ status: res.statusCode!, body }));
        });
        req.on('error', reject);
        for (let i = 0; i < 3; i++) req.write(Buffer.alloc(40 * 1024));
        req.end();
      });
      expect(chunked.status).to.equal(413);
      expect(chunked.body).to.match(/more than the limit of 65536 bytes/);
    });

    it('answers 503 with Retry-After when overloaded and 504 on timeout; close() finishes in-flight requests', async () => {
      const g = gated(model);
      const s = await serve(g, { metadata, port: 0, maxBatchSize: 1, maxDelayMs: 0, maxQueue: 1, timeoutMs: 0 });
      const u = s.url, png = await image(5);
      const send = (p = '/predictions') => fetch(u + p, { method: 'POST', body: png, headers: { 'content-type': 'image/png' } });
      g.hold();
      const first = send();
      await until(() => s.batcher.inFlightBatches === 1);
      const second = send();
      await until(() => s.batcher.queueDepth === 1);
      const third = await send();
      expect(third.status).to.equal(503);
      expect(third.headers.get('retry-after')).to.equal('1');
      expect(((await third.json()) as { error: string }).error).to.match(/overloaded: 1 images already queued \(maxQueue 1\)/);
      const closing = s.close(); // first and second are in flight: both must still be answered
      expect((await fetch(u + '/ready').catch(() => null))?.status ?? 'refused').to.not.equal(200); // refused, or 503 on a kept-alive connection
      g.release();
      expect((await first).status).to.equal(200);
      expect((await second).status).to.equal(200);
      await closing;
      await expectFetchFails(u + '/health');

      const t = await serve(g, { metadata, port: 0, timeoutMs: 30, maxDelayMs: 0 });
      g.hold();
      const late = await fetch(t.url + '/predictions', { method: 'POST', body: png, headers: { 'content-type': 'image/png' } });
      expect(late.status).to.equal(504);
      expect(((await late.json()) as { error: string }).error).to.match(/timed out after 30 ms/);
      g.release();
      await t.close();
    });

    it('survives garbage (broken HTTP, bad URLs, aborted bodies, random bytes) and keeps memory flat', async () => {
      const port = new URL(url).port;
      const raw = (text: string) => new Promise<string>((resolve) => {
        const sock = net.connect(Number(port), '127.0.0.1', () => sock.write(text));
        let got = '';
        sock.on('data', (d) => (got += d)).on('close', () => resolve(got)).on('error', () => resolve(got));
        setTimeout(() => sock.destroy(), 500);
      });
      expect(await raw('GARBAGE\r\n\r\n')).to.match(/^HTTP\/1\.1 400/);
      expect(await raw('GET //%%% HTTP/1.1\r\nHost: x\r\n\r\n')).to.match(/^HTTP\/1\.1 (400|404)/);
      await raw('POST /predictions HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 5000\r\n\r\n\x89PNG'); // aborted
      const noise = Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 131) & 255));
      const before = kiln.memory();
      const good = await image(9);
      const bodies: [Body, string][] = [[good, 'image/png'], [noise, 'image/jpeg'], ['{"instances":[[[["x"]]]]}', 'application/json'], [good, 'image/webp'], ['[]', 'application/json']];
      for (let round = 0; round < 60; round++) await Promise.all(bodies.map(([b, t]) => post('/predictions', b, t)));
      expectMemoryAt(before);
      expect((await fetch(url + '/health')).status).to.equal(200);
      expect((await post('/predictions', good, 'image/png')).status).to.equal(200);
    });

    it('serves /health, /ready, /models and Prometheus /metrics', async () => {
      expect(await (await fetch(url + '/health')).json()).to.deep.equal({ status: 'ok' });
      expect(await (await fetch(url + '/ready')).json()).to.deep.equal({ ready: true });
      const models = (await (await fetch(url + '/models')).json()) as { models: Record<string, unknown>[] };
      expect(models.models[0]).to.include({ name: 'shapes', device: 'cpu' });
      expect(models.models[0].inputShape).to.deep.equal([3, 32, 32]);
      expect(models.models[0].classes).to.deep.equal(CLASSES);
      expect(await (await fetch(url + '/v1/models/shapes')).json()).to.deep.include({ name: 'shapes' });
      const m = await fetch(url + '/metrics');
      expect(m.headers.get('content-type')).to.include('text/plain; version=0.0.4');
      const text = await m.text();
      const sv = 'model="shapes",version="1"';
      for (const name of [`kiln_http_requests_total{route="/predictions",method="POST",status="200",${sv}}`, `kiln_http_requests_total{route="/predictions",method="POST",status="415",${sv}}`,
        `kiln_http_request_duration_seconds_bucket{route="/predictions",${sv},le="+Inf"}`, `kiln_batch_size_bucket{${sv},le="1"}`, `kiln_queue_depth{${sv}} 0`, 'kiln_inflight_requests 1',
        `kiln_inflight_batches{${sv}} 0`, 'kiln_tensors_alive', `kiln_images_total{${sv}}`, 'kiln_http_requests_total{route="/health",method="GET",status="200"}'])
        expect(text, name).to.include(name);
      expect(text).to.match(/# TYPE kiln_batch_size histogram/);
    });
  });

  describe('several models, versions and the management API', () => {
    // grey 24×24 two-class models saved as Kiln model folders (bw1, bw2), and broken folders for the management API
    const BW = ['cat', 'dog'];
    const bwMeta = { classNames: JSON.stringify(BW), inputSize: JSON.stringify([24, 24]), channels: '1', mean: '[0.5]', std: '[0.5]' };
    const bwDir = (v: number) => path.join(dir, `bw${v}`);
    const save = (folder: string, seed: number, meta?: Record<string, string>) => {
      kiln.manualSeed(seed);
      const m = kiln.models.simpleCnn({ numClasses: 2, inChannels: 1, width: 4 });
      fs.mkdirSync(folder);
      kiln.saveModel(path.join(folder, 'model.safetensors'), m, meta);
      m.dispose();
    };
    let bw1: kiln.nn.Module, bw2: kiln.nn.Module;
    before(() => {
      save(bwDir(1), 11, bwMeta);
      save(bwDir(2), 12, bwMeta);
      save(path.join(dir, 'nometa'), 13); // weights without inputSize/channels metadata
      fs.mkdirSync(path.join(dir, 'empty'));
      fs.mkdirSync(path.join(dir, 'garbage'));
      fs.writeFileSync(path.join(dir, 'garbage', 'model.safetensors'), 'not a safetensors file');
      bw1 = kiln.loadModel(path.join(bwDir(1), 'model.safetensors')).model;
      bw2 = kiln.loadModel(path.join(bwDir(2), 'model.safetensors')).model;
    });
    after(() => [bw1, bw2].forEach((m) => m.dispose()));
    const bwDirect = (m: kiln.nn.Module, bytes: Buffer) => directOf(m.eval(), bytes, 24, 1, [0.5], [0.5]);

    it('serves two models on their own routes with their own options, answers and metric labels', async () => {
      const s = await serve({ models: { shapes: { model, metadata, maxBatchSize: 4 }, bw: { model: bw1, metadata: bwMeta } }, port: 0, maxDelayMs: 2 });
      try {
        const png = await image(3);
        const a = await call(s.url + '/predictions/shapes', png);
        expect(a.status, JSON.stringify(a.body)).to.equal(200);
        expect(a.body).to.include({ model: 'shapes', version: '1' });
        expectClose(probsOf(a.body.predictions[0], 3), await direct(png), 1e-4, 1e-6);
        const want = await bwDirect(bw1, png);
        for (const route of ['/predictions/bw', '/predictions/bw/1', '/v1/models/bw:predict', '/v1/models/bw/versions/1:predict']) {
          const b = await call(s.url + route, png);
          expect(b.status, route).to.equal(200);
          expect(b.body).to.include({ model: 'bw', version: '1' });
          expect(b.body.predictions[0].top.map((t: { class: string }) => t.class)).to.have.members(BW);
          expectClose(probsOf(b.body.predictions[0], 2), want, 1e-4, 1e-6);
        }
        const none = await call(s.url + '/predictions', png);
        expect(none.status).to.equal(400);
        expect(none.body).to.include({ code: 'MODEL_REQUIRED' });
        expect(none.body.error).to.match(/several models \('shapes', 'bw'\): name one, as \/predictions\/<name>/);
        const unknown = await call(s.url + '/v1/models/cats:predict', png);
        expect(unknown.status).to.equal(404);
        expect(unknown.body.error).to.match(/no model named 'cats': this server serves 'shapes', 'bw'/);

        const list = (await (await fetch(s.url + '/models')).json()) as { models: Record<string, any>[] };
        expect(list.models.map((m) => m.name)).to.deep.equal(['shapes', 'bw']);
        const [sh, bw] = list.models;
        expect(sh.batching).to.include({ maxBatchSize: 4, maxDelayMs: 2 });
        expect(bw.batching).to.include({ maxBatchSize: 32, maxDelayMs: 2 }); // the server-level default
        expect(bw).to.deep.include({ inputShape: [1, 24, 24], classes: BW, defaultVersion: '1', status: 'ready', queueDepth: 0 });
        expect(bw.versions.map((v: { version: string }) => v.version)).to.deep.equal(['1']);
        expect(await (await fetch(s.url + '/models/bw')).json()).to.deep.equal(bw);
        expect(() => s.batcher).to.throw(/several models/);
        expect(s.endpoint('shapes').batcher.maxBatchSize).to.equal(4);

        // per-model labels; the tensor memory is read once per scrape
        const mem = memoryModule as { memory: typeof kiln.memory };
        const memory = mem.memory;
        let reads = 0;
        mem.memory = () => (reads++, memory());
        let text: string;
        try {
          text = await (await fetch(s.url + '/metrics')).text();
        } finally {
          mem.memory = memory;
        }
        expect(reads).to.equal(1);
        for (const line of ['kiln_images_total{model="shapes",version="1"} 1', 'kiln_images_total{model="bw",version="1"} 4',
          'kiln_http_requests_total{route="/predictions",method="POST",status="200",model="bw",version="1"} 2',
          'kiln_http_requests_total{route="/v1/models/:name:predict",method="POST",status="200",model="bw",version="1"} 2',
          'kiln_http_requests_total{route="/predictions",method="POST",status="400"} 1', 'kiln_http_requests_total{route="/v1/models/:name:predict",method="POST",status="404"} 1',
          'kiln_http_request_duration_seconds_count{route="/predictions",model="shapes",version="1"} 1',
          'kiln_batch_size_sum{model="bw",version="1"} 5', 'kiln_batch_size_sum{model="shapes",version="1"} 2', // one warm-up batch each
          'kiln_queue_depth{model="shapes",version="1"} 0', 'kiln_queue_depth{model="bw",version="1"} 0', 'kiln_inflight_batches{model="bw",version="1"} 0'])
          expect(text, line).to.include(line + '\n');
      } finally {
        await s.close();
      }
      expect(bw1.parameters()[0].shape).to.have.length(4); // a model passed in is not disposed by the server
    });

    it('versions: the latest registered is the default until one is set; every version has its routes', async () => {
      const s = await serve({ models: { bw: { model: bw1, metadata: bwMeta } }, port: 0 });
      try {
        const png = await image(4);
        const want1 = await bwDirect(bw1, png), want2 = await bwDirect(bw2, png);
        expect(Math.abs(want1[0] - want2[0])).to.be.above(1e-3); // two different models
        const answer = async (route: string, version: string, want?: number[]) => {
          const r = await call(s.url + route, png);
          expect(r.status, JSON.stringify(r.body)).to.equal(200);
          expect(r.body.version, route).to.equal(version);
          if (want) expectClose(probsOf(r.body.predictions[0], 2), want, 1e-4, 1e-6);
        };
        expect((await s.register('bw', bw2, { version: '2', metadata: bwMeta })).state).to.equal('ready');
        await answer('/predictions/bw', '2', want2);
        await answer('/predictions', '2'); // one name with several versions: /predictions still works
        await answer('/predictions/bw/1', '1', want1);
        await answer('/v1/models/bw/versions/2:predict', '2', want2);
        s.setDefault('bw', '1');
        await answer('/v1/models/bw:predict', '1', want1);
        await s.register('bw', bw2, { version: '3', metadata: bwMeta });
        await answer('/predictions/bw', '1'); // an explicit default stays
        const d = (await (await fetch(s.url + '/models/bw')).json()) as Record<string, any>;
        expect(d).to.include({ defaultVersion: '1', version: '1' });
        expect(d.versions.map((v: { version: string }) => v.version)).to.deep.equal(['1', '2', '3']);
        expect(await (await fetch(s.url + '/v1/models/bw/versions/2')).json()).to.include({ name: 'bw', version: '2', status: 'ready' });
        const missing = await call(s.url + '/predictions/bw/9', png);
        expect(missing.status).to.equal(404);
        expect(missing.body.error).to.equal("model 'bw' has no version '9' (versions: '1', '2', '3')");
        await expectRejects(s.register('bw', bw2, { version: '2', metadata: bwMeta }), 'MODEL_EXISTS', "model 'bw' version '2' is already registered");
        expectKilnError(() => s.setDefault('bw', '7'), 'VERSION_NOT_FOUND', "no version '7'");
        expect(await s.unregister('bw', '1')).to.deep.equal(['1']);
        await answer('/predictions/bw', '3'); // the explicit default left: the latest registered takes over
        s.setDefault('bw', '2');
        await answer('/predictions/bw', '2', want2);
        await s.register('bw', bw1, { version: '4', metadata: bwMeta, default: true });
        await answer('/predictions/bw', '4', want1);
      } finally {
        await s.close();
      }
    });

    it('management API: off by default; on 127.0.0.1 it registers a saved model folder that then predicts', async () => {
      const off = await serve(model, { metadata, port: 0 });
      try {
        expect(() => off.managementUrl).to.throw(/management API is off/);
        const r = await call(`${off.url}/models?url=${bwDir(1)}`);
        expect(r.status).to.equal(405);
        expect(r.body.error).to.match(/added and removed on the management API, which is off/);
      } finally {
        await off.close();
      }
      const s = await serve({ port: 0, managementPort: 0, modelStore: dir });
      try {
        const m = s.managementUrl;
        expect(new URL(m).hostname).to.equal('127.0.0.1');
        expect(m).to.not.equal(s.url);
        const png = await image(6);
        const notReady = await fetch(s.url + '/ready');
        expect(notReady.status).to.equal(503);
        expect(await notReady.json()).to.deep.equal({ ready: false, reason: 'no model is registered' });
        expect((await call(s.url + '/predictions', png)).body.code).to.equal('NO_MODELS');

        const reg = await call(m + '/models?url=bw1&batch_size=8&max_batch_delay=3&top=1');
        expect(reg.status, JSON.stringify(reg.body)).to.equal(200);
        expect(reg.body.status).to.equal("model 'bw1' version '1' registered"); // named after its folder
        expect(reg.body.model.batching).to.include({ maxBatchSize: 8, maxDelayMs: 3 });
        expect(reg.body.model).to.deep.include({ classes: BW, inputShape: [1, 24, 24], top: 1 });
        const p = await call(s.url + '/predictions', png);
        expect(p.status).to.equal(200);
        expect(p.body).to.include({ model: 'bw1', version: '1' });
        expect(p.body.predictions[0].top).to.have.length(1);
        expect(p.body.predictions[0].top[0].probability).to.be.closeTo(Math.max(...(await bwDirect(bw1, png))), 1e-5);
        expect((await fetch(s.url + '/ready')).status).to.equal(200);

        const v2 = await call(`${m}/models?url=${encodeURIComponent(bwDir(2))}&model_name=bw1&version=2`);
        expect(v2.status, JSON.stringify(v2.body)).to.equal(200);
        expect((await call(s.url + '/predictions/bw1', png)).body.version).to.equal('2');
        // per-model conversion: bf16 weights, channels-last batches; the answer is the bf16 model's
        const v3 = await call(`${m}/models?url=bw2&model_name=bwbf&precision=bf16&channels_last=true&device=cpu`);
        expect(v3.status, JSON.stringify(v3.body)).to.equal(200);
        expect(v3.body.model).to.include({ precision: 'bf16', channelsLast: true, device: 'cpu' });
        const half = await call(s.url + '/predictions/bwbf', png);
        expect(half.status).to.equal(200);
        expect(half.body.predictions[0].top[0].probability).to.be.closeTo(Math.max(...(await bwDirect(bw2, png))), 0.02);
        expect((await call(m + '/models/bwbf', undefined, undefined, 'DELETE')).status).to.equal(200);
        // an optimised (frozen) copy answers as the model does
        const v4 = await call(`${m}/models?url=bw2&model_name=bwopt&optimize=true`);
        expect(v4.status, JSON.stringify(v4.body)).to.equal(200);
        expect(v4.body.model).to.include({ optimized: true });
        const fast = await call(s.url + '/predictions/bwopt', png);
        expect(fast.body.predictions[0].top[0].probability).to.be.closeTo(Math.max(...(await bwDirect(bw2, png))), 1e-4);
        expect((await call(m + '/models/bwopt', undefined, undefined, 'DELETE')).status).to.equal(200);
        // CUDA graphs per model: refused off CUDA, and `false` turns a server-wide default off
        const graphs = await call(`${m}/models?url=bw2&model_name=bwg&cuda_graphs=true`);
        expect(graphs.status).to.equal(400);
        expect(graphs.body.error).to.match(/cudaGraphs: CUDA graphs replay on a CUDA device/);
        expect((await call(`${m}/models?url=bw2&model_name=bwg&cuda_graphs=false&optimize=true`)).status).to.equal(200);
        expect((await call(m + '/models/bwg', undefined, undefined, 'DELETE')).status).to.equal(200);
        const def = await call(m + '/models/bw1/1/set-default', undefined, undefined, 'PUT');
        expect(def.status).to.equal(200);
        expect(def.body.model.defaultVersion).to.equal('1');
        expect((await call(s.url + '/predictions/bw1', png)).body.version).to.equal('1');
        expect(await (await fetch(m + '/models/bw1/2')).json()).to.include({ name: 'bw1', version: '2' });
        const del = await call(m + '/models/bw1', undefined, undefined, 'DELETE');
        expect(del.body.status).to.equal("model 'bw1' versions '1', '2' unregistered");
        expect(await (await fetch(m + '/models')).json()).to.deep.equal({ models: [] });
      } finally {
        await s.close();
      }
    });

    it('management API: every malformed request is a 4xx naming the problem; nothing leaks; the server lives on', async () => {
      const s = await serve({ models: { shapes: { model, metadata } }, port: 0, managementPort: 0, modelStore: dir });
      try {
        const m = s.managementUrl;
        expect((await call(m + '/models?url=bw1&model_name=taken')).status).to.equal(200);
        if (!fs.existsSync(path.join(dir, 'escape'))) fs.symlinkSync('/etc', path.join(dir, 'escape')); // a link out of the store
        gc();
        const before = kiln.memory();
        const cases: [string, string, number, string, RegExp][] = [
          ['POST', '/models?url=escape', 403, 'FORBIDDEN_PATH', /'escape' is outside the model store/],
          ['POST', '/models', 400, 'MISSING_PARAMETER', /query parameter 'url' is required: the folder of a model saved by Kiln/],
          ['POST', '/models?model_name=x', 400, 'MISSING_PARAMETER', /'url' is required/],
          ['POST', '/models?url=nothere', 400, 'MODEL_DIR_NOT_FOUND', /model folder \S*nothere does not exist/],
          ['POST', '/models?url=empty', 400, 'BAD_MODEL_DIR', /empty holds no model\.safetensors/],
          ['POST', '/models?url=garbage', 400, 'BAD_MODEL_DIR', /cannot load \S*garbage\/model\.safetensors: /],
          ['POST', '/models?url=nometa', 400, 'BAD_MODEL', /cannot serve \S*nometa\S* as 'nometa': inputSize/],
          ['POST', '/models?url=/etc', 403, 'FORBIDDEN_PATH', /'\/etc' is outside the model store/],
          ['POST', '/models?url=../bw1', 403, 'FORBIDDEN_PATH', /'\.\.\/bw1' is outside the model store/],
          ['POST', '/models?url=bw1&model_name=taken', 409, 'MODEL_EXISTS', /model 'taken' version '1' is already registered/],
          ['POST', '/models?url=bw2&model_name=shapes', 409, 'MODEL_EXISTS', /model 'shapes' version '1' is already registered/],
          ['POST', '/models?url=bw1&model_name=a%20b', 400, 'BAD_PARAMETER', /model_name must be up to 128 letters, digits/],
          ['POST', `/models?url=bw1&version=${'v'.repeat(5000)}`, 400, 'BAD_PARAMETER', /version must be up to 128 letters, digits.*vvvv…'/],
          ['POST', '/models?url=bw1&model_name=n&version=', 400, 'BAD_PARAMETER', /version must be up to 128 letters/],
          ['POST', '/models?url=bw1&model_name=n&batch_size=0', 400, 'BAD_PARAMETER', /batch_size must be an integer ≥ 1, got '0'/],
          ['POST', '/models?url=bw1&model_name=n&max_batch_delay=soon', 400, 'BAD_PARAMETER', /max_batch_delay must be a number ≥ 0, got 'soon'/],
          ['POST', '/models?url=bw1&model_name=n&set_default=yes', 400, 'BAD_PARAMETER', /set_default must be true or false/],
          ['POST', '/models?url=bw1&model_name=n&precision=fp8', 400, 'BAD_PARAMETER', /precision must be one of fp32, bf16, fp16, got 'fp8'/],
          ['POST', '/models?url=bw1&model_name=n&device=tpu', 400, 'BAD_PARAMETER', /device must be one of cpu, cuda, got 'tpu'/],
          ['POST', '/models?url=bw1&model_name=n&channels_last=1', 400, 'BAD_PARAMETER', /channels_last must be true or false/],
          ['POST', '/models?url=bw1&model_name=n&optimize=yes', 400, 'BAD_PARAMETER', /optimize must be true or false/],
          ['POST', '/models?url=bw1&model_name=n&cuda_graphs=1', 400, 'BAD_PARAMETER', /cuda_graphs must be true or false/],
          ...(kiln.info().cudaAvailable ? [] : [
            ['POST', '/models?url=bw1&model_name=n&precision=fp16', 400, 'BAD_MODEL', /cannot serve \S+ as 'n': precision 'fp16' needs a CUDA device/],
          ] as [string, string, number, string, RegExp][]),
          ['POST', '/models?url=bw1&workers=4', 400, 'UNKNOWN_PARAMETER', /unknown query parameter 'workers' \(known: url, model_name/],
          ['DELETE', '/models/ghost', 404, 'MODEL_NOT_FOUND', /no model named 'ghost': this server serves 'shapes', 'taken'/],
          ['DELETE', '/models/taken/7', 404, 'VERSION_NOT_FOUND', /model 'taken' has no version '7'/],
          ['PUT', '/models/ghost/1/set-default', 404, 'MODEL_NOT_FOUND', /no model named 'ghost'/],
          ['PUT', '/models/taken/3/set-default', 404, 'VERSION_NOT_FOUND', /no version '3'/],
          ['GET', '/models/taken/1/set-default', 405, 'METHOD_NOT_ALLOWED', /GET \S+ is not allowed: use PUT/],
          ['PUT', '/models', 405, 'METHOD_NOT_ALLOWED', /use GET or POST/],
          ['POST', '/predictions', 404, 'NOT_FOUND', /no management route POST \/predictions/],
        ];
        for (const [method, p, status, code, re] of cases) {
          const r = await call(m + p, undefined, undefined, method);
          expect(r.status, `${method} ${p}: ${JSON.stringify(r.body)}`).to.equal(status);
          expect(r.body.code, p).to.equal(code);
          expect(r.body.error, p).to.match(re);
        }
        expectMemoryAt(before);
        expect((await fetch(s.url + '/health')).status).to.equal(200);
        expect((await call(s.url + '/predictions/taken', await image(2))).status).to.equal(200);
        expect(await (await fetch(s.url + '/ready')).json()).to.deep.equal({ ready: true });
        expect((await (await fetch(m + '/models')).json() as { models: { name: string }[] }).models.map((x) => x.name)).to.deep.equal(['shapes', 'taken']);
        const text = await (await fetch(s.url + '/metrics')).text();
        expect(text).to.include('kiln_http_requests_total{route="management /models",method="POST",status="400"}');
      } finally {
        await s.close();
      }
    });

    it('a warm-up that fails after its version was unregistered and registered again leaves the new endpoint serving', async () => {
      const s = await serve({ models: { shapes: { model, metadata } }, port: 0 });
      try {
        let fail = true;
        const first = gated(bw1.eval());
        const failing: BatchModel = { forwardAsync: async (x: kiln.Tensor) => { const out = await first.forwardAsync(x); if (fail) { out.dispose(); throw new Error('warm-up boom'); } return out; } };
        first.hold();
        const p1 = s.register('m', failing, { metadata: bwMeta }).then(() => 'ok', (e: Error) => e.message);
        await until(() => first.calls.length === 1);
        const gone = s.unregister('m');
        expect((await s.register('m', bw2.eval(), { metadata: bwMeta })).state).to.equal('ready');
        first.release();
        expect(await p1).to.match(/model 'm' version '1' failed its warm-up batch: warm-up boom/);
        expect(await gone).to.deep.equal(['1']);
        fail = false;
        expect(s.registry.all().map((e) => `${e.name}/${e.version}:${e.state}`)).to.deep.equal(['shapes/1:ready', 'm/1:ready']);
        expect((await call(s.url + '/predictions/m', await image(8))).status).to.equal(200);
      } finally {
        await s.close();
      }
    });

    it('unregister drains: in-flight requests finish, later ones get 404, /ready stays 200 for the rest; memory returns to its baseline', async () => {
      const g = gated(bw1.eval());
      const s = await serve({ models: { shapes: { model, metadata } }, port: 0, managementPort: 0, modelStore: dir, maxBatchSize: 1 });
      try {
        const m = s.managementUrl, png = await image(8);
        gc();
        const before = kiln.memory();
        // loaded from its folder by the server: registered, used, unregistered → every tensor freed
        expect((await call(m + '/models?url=bw2&model_name=tmp')).status).to.equal(200);
        expect((await call(s.url + '/predictions/tmp', png)).status).to.equal(200);
        const del = await call(m + '/models/tmp', undefined, undefined, 'DELETE');
        expect(del.status).to.equal(200);
        expect(del.body.status).to.equal("model 'tmp' version '1' unregistered");
        expectMemoryAt(before);
        expect(await (await fetch(s.url + '/metrics')).text(), "an unregistered version's series are gone").not.to.include('model="tmp"');

        await s.register('slow', g, { metadata: bwMeta });
        const slow = s.endpoint('slow');
        g.hold();
        const inflight = [1, 2, 3].map(() => call(s.url + '/predictions/slow', png));
        await until(() => slow.batcher.inFlightBatches === 1 && slow.batcher.queueDepth === 2);
        const deleting = call(m + '/models/slow', undefined, undefined, 'DELETE');
        await until(() => slow.state === 'draining');
        // the draining version has left the routes; the server stays in rotation for the others
        expect(await (await fetch(s.url + '/ready')).json()).to.deep.equal({ ready: true });
        const late = await call(s.url + '/predictions/slow', png);
        expect(late.status).to.equal(404);
        expect(late.body.error).to.match(/no model named 'slow'/);
        expect((await call(s.url + '/predictions/shapes', png)).status).to.equal(200); // the others keep serving
        g.release();
        for (const r of await Promise.all(inflight)) expect(r.body).to.include({ model: 'slow', version: '1' });
        expect((await deleting).status).to.equal(200);
        expect(slow.state).to.equal('closed');
        expect((await fetch(s.url + '/ready')).status).to.equal(200);
        expect(((await (await fetch(s.url + '/models')).json()) as { models: { name: string }[] }).models.map((x) => x.name)).to.deep.equal(['shapes']);
      } finally {
        g.release();
        await s.close();
      }
    });

    it('access log: one entry per finished request on each listener, with the x-request-id every answer carries', async () => {
      const entries: kiln.serving.AccessLogEntry[] = [];
      const s = await serve({ models: { shapes: { model, metadata } }, port: 0, managementPort: 0, modelStore: dir, accessLog: (e) => entries.push(e) });
      try {
        entries.length = 0; // (none from the warm-up)
        const png = await image(3);
        const r = await fetch(s.url + '/predictions/shapes', { method: 'POST', body: png, headers: { 'content-type': 'image/png', 'x-request-id': 'client-42' } });
        expect(r.status).to.equal(200);
        expect(r.headers.get('x-request-id')).to.equal('client-42');
        const text = await r.text();
        const bad = await fetch(s.url + '/predictions/shapes', { method: 'POST', body: 'not an image', headers: { 'content-type': 'image/png', 'x-request-id': 'has spaces in it' } });
        expect(bad.status).to.equal(400);
        const made = bad.headers.get('x-request-id')!;
        expect(made, 'a new id replaces an unusable one').to.match(/^[0-9a-f-]{36}$/);
        await bad.text();
        const lost = await fetch(s.url + '/nowhere');
        expect(lost.headers.get('x-request-id')).to.match(/^[0-9a-f-]{36}$/);
        await lost.text();
        const mg = await fetch(s.managementUrl + '/models');
        await mg.text();
        await until(() => entries.length === 4);
        const [ok, failed, unknown, management] = entries;
        expect(ok).to.include({ id: 'client-42', listener: 'inference', method: 'POST', path: '/predictions/shapes', route: '/predictions', status: 200, model: 'shapes', version: '1', bytesIn: png.length, bytesOut: Buffer.byteLength(text) });
        expect(ok.remote).to.match(/127\.0\.0\.1/);
        expect(ok.ms).to.be.a('number').and.be.above(0);
        expect(Date.parse(ok.time)).to.be.closeTo(Date.now(), 60000);
        expect(ok).not.to.have.property('error');
        expect(failed).to.include({ id: made, status: 400, error: 'BAD_IMAGE', model: 'shapes', bytesIn: 12 });
        expect(unknown).to.include({ status: 404, error: 'NOT_FOUND', path: '/nowhere', bytesIn: null });
        expect(unknown).not.to.have.property('model');
        expect(management).to.include({ listener: 'management', method: 'GET', path: '/models', status: 200 });
      } finally {
        await s.close();
      }
      // a logger that throws: warned about once, every request still answered
      const warnings: string[] = [];
      const onWarning = (w: Error) => warnings.push(w.message);
      process.on('warning', onWarning);
      const t = await serve({ models: { shapes: { model, metadata } }, port: 0, accessLog: () => { throw new Error('disk full'); } });
      try {
        for (let i = 0; i < 3; i++) expect((await fetch(t.url + '/health')).status).to.equal(200);
        await new Promise((r) => setImmediate(r));
        expect(warnings.filter((w) => w.includes('the access logger threw (disk full)'))).to.have.length(1);
      } finally {
        process.off('warning', onWarning);
        await t.close();
      }
      expectKilnError(() => new Server({ models: { shapes: model }, accessLog: 'log.txt' as never }), 'INVALID_ARGUMENT', 'accessLog', 'a function');
    });

    it('rejects bad model specs with clear errors', async () => {
      expectKilnError(() => new Server({}), 'INVALID_ARGUMENT', 'models', 'at least one');
      expectKilnError(() => new Server({ models: { 'a b': model } }), 'INVALID_ARGUMENT', 'name', 'letters, digits');
      expectKilnError(() => new Server({ models: { a: { metadata } } }), 'INVALID_ARGUMENT', 'models.a', 'exactly one of model and path');
      expectKilnError(() => new Server({ models: { a: [{ model, metadata }, { model, metadata }] } }), 'MODEL_EXISTS', "model 'a' version '1' is already registered");
      expectKilnError(() => new Server(model, { metadata, models: {} } as never), 'INVALID_ARGUMENT', 'not both');
      expectKilnError(() => new Server({ models: { a: { path: path.join(dir, 'nothere') } } }), 'MODEL_DIR_NOT_FOUND', 'does not exist');
      const ok = await serve({ models: { a: { path: bwDir(1) } }, port: 0 }); // a folder given by path: loaded, and disposed on close
      gc();
      const during = kiln.memory().numTensors;
      await ok.close();
      expect(kiln.memory().numTensors).to.be.below(during);
    });
  });

  describe('kiln serve', () => {
    it('starts, prints its URL, answers, and stops cleanly on SIGTERM', async () => {
      const { child, found: [u], output } = await startCli(['--model', dir, '--port', '0', '--max-delay-ms', '1', '--top', '2'], [/listening on (http:\/\/\S+)/]);
      const r = await fetch(u + '/predictions', { method: 'POST', body: await image(4), headers: { 'content-type': 'image/png' } });
      expect(r.status).to.equal(200);
      expect(((await r.json()) as { predictions: { top: unknown[] }[] }).predictions[0].top).to.have.length(2);
      expect(await stopCli(child), output()).to.equal(0);
      expect(output()).to.match(/SIGTERM: finishing in-flight requests[\s\S]*stopped/);
    });

    it('serves several --model NAME[@VERSION]=DIR, with the management API on --management-port', async () => {
      const bw = path.join(dir, 'bw2'); // written by the tests above
      const { child, found: [u, m], output } = await startCli(['--model', `shapes=${dir}`, '--model', `bw@2=${bw}`, '--port', '0', '--management-port', '0', '--model-store', dir],
        [/listening on (http:\/\/\S+)/, /management API on (http:\/\/\S+)/]);
      try {
        expect(output()).to.include("serving 'shapes' version '1' (3 classes, input 3×32×32)").and.include("serving 'bw' version '2' (2 classes, input 1×24×24)");
        const png = await image(4);
        expect((await call(u + '/predictions/shapes', png)).body).to.include({ model: 'shapes', version: '1' });
        expect((await call(u + '/predictions/bw', png)).body).to.include({ model: 'bw', version: '2' });
        expect((await call(u + '/predictions', png)).status).to.equal(400);
        expect((await call(m + '/models?url=bw1&model_name=bw')).status).to.equal(200);
        expect((await call(u + '/predictions/bw', png)).body).to.include({ model: 'bw', version: '1' }); // the latest registered
      } finally {
        expect(await stopCli(child), output()).to.equal(0);
      }
      await expectRejects(run(['serve', '--model', dir, '--model', bw]), 'USAGE', 'several --model flags need names: --model NAME=DIR');
      await expectRejects(run(['serve', '--model', `a=${dir}`, '--model', `a=${bw}`]), 'USAGE', "--model: 'a' version '1' is given twice");
    });

    it('--config: server settings and each model its own (precision, batching, top, default version); command-line flags win over the file', async () => {
      const file = path.join(dir, 'serve.json');
      fs.writeFileSync(file, JSON.stringify({
        port: 1, 'max-batch': 4, 'max-delay-ms': 7, top: 1, explanations: true, // port 1, the delay and explanations are overridden on the command line below
        models: {
          shapes: { path: '.', precision: 'bf16', 'max-batch': 8, 'channels-last': true },
          bw: [{ path: 'bw1', default: true }, { path: path.join(dir, 'bw2'), version: '2', top: 2, 'max-queue': 16 }],
        },
      }));
      const { child, found: [u], output } = await startCli(['--config', file, '--port', '0', '--max-delay-ms', '3', '--no-explanations', '--model', `extra=${path.join(dir, 'bw1')}`], [/listening on (http:\/\/\S+)/]);
      try {
        expect(output()).to.include("serving 'shapes' version '1' (3 classes, input 3×32×32) on cpu, bf16, channels-last; max batch 8, max delay 3 ms")
          .and.include("serving 'bw' version '1' (2 classes, input 1×24×24) on cpu, fp32; max batch 4, max delay 3 ms")
          .and.include("serving 'extra' version '1'");
        const shapes = await (await fetch(u + '/models/shapes/1')).json() as Record<string, unknown>;
        expect(shapes).to.deep.include({ precision: 'bf16', channelsLast: true, top: 1 });
        expect(shapes.routes, '--no-explanations on the command line beats the file').not.to.have.property('explain');
        expect(output()).not.to.include('POST /explanations');
        const bw2 = await (await fetch(u + '/models/bw/2')).json() as { top: number; batching: Record<string, number> };
        expect(bw2.top).to.equal(2);
        expect(bw2.batching).to.include({ maxBatchSize: 4, maxDelayMs: 3, maxQueue: 16 });
        const png = await image(4);
        const one = await call(u + '/predictions/bw', png); // version 1 is the default ("default": true), top 1 from the file
        expect(one.body).to.include({ model: 'bw', version: '1' });
        expect(one.body.predictions[0].top).to.have.length(1);
        expect((await call(u + '/predictions/bw/2', png)).body.predictions[0].top).to.have.length(2);
        const sh = await call(u + '/predictions/shapes', png);
        expect(sh.status).to.equal(200);
        expect(sh.body.predictions[0].top[0].probability).to.be.closeTo(Math.max(...(await directOf(model, png, 32, 3, MEAN, STD))), 0.03); // bf16
      } finally {
        expect(await stopCli(child), output()).to.equal(0);
      }
      const bad = async (doc: unknown, re: RegExp, extra: string[] = []) => {
        fs.writeFileSync(file, typeof doc === 'string' ? doc : JSON.stringify(doc));
        await expectRejects(run(['serve', '--config', file, '--port', '0', ...extra]), 'USAGE', re);
      };
      await expectRejects(run(['serve', '--config', path.join(dir, 'nothere.json')]), 'USAGE', /--config \S+nothere\.json: cannot read it \(ENOENT\)/);
      await expectRejects(run(['serve', '--config', dir]), 'USAGE', /--config \S+: cannot read it \(it is a directory, not a regular file\)/);
      await bad('{"port": 80,', /--config \S+serve\.json: not valid JSON/);
      await bad([1, 2], /serve\.json: the file must hold a JSON object of settings and "models" \(got an array\)/);
      await bad({ batch: 8, models: { a: { path: 'bw1' } } }, /serve\.json: batch: unknown setting \(known: port|serve\.json: batch: unknown setting \(known: .*max-batch/);
      await bad({ model: 'bw1' }, /serve\.json: model: unknown setting/);
      await bad({ 'max-batch': '8', models: { a: { path: 'bw1' } } }, /serve\.json: max-batch must be an integer \(got '8'\)/);
      await bad({ models: { a: { path: 'bw1', 'max-batch': 0 } } }, /serve\.json: models\.a\.max-batch must be ≥ 1 \(got 0\)/);
      await bad({ models: { a: { path: 'bw1', precision: 'fp8' } } }, /serve\.json: models\.a\.precision must be one of fp32, bf16, fp16 \(got 'fp8'\)/);
      await bad({ models: { a: { path: 'bw1', port: 9 } } }, /serve\.json: models\.a\.port: unknown setting for a model \(it is the server's: put it at the top level\)/);
      await bad({ models: { a: [{ path: 'bw1' }, { version: '2' }] } }, /serve\.json: models\.a\[1\]\.path is required: the folder written by kiln train --out \(got nothing\)/);
      await bad({ models: { a: [] } }, /serve\.json: models\.a is an empty list/);
      await bad({ models: { a: 'bw1' } }, /serve\.json: models\.a must be \{"path": DIR, …\} \(got "bw1"\)/);
      await bad({ models: { 'a b': { path: 'bw1' } } }, /serve\.json: models: the name 'a b' must be up to 128 letters/);
      await bad({ models: { a: { path: 'bw1', version: 2 } } }, /serve\.json: models\.a\.version must be a string/);
      await bad({ models: { a: { path: 'bw1', default: 'yes' } } }, /serve\.json: models\.a\.default must be true or false/);
      await bad({ models: [] }, /serve\.json: models must be an object of name → \{"path", …\} \(got an array\)/);
      await bad({ models: { a: { path: 'bw1' } } }, /serve\.json: models\.a: 'a' version '1' is given twice/, ['--model', `a=${path.join(dir, 'bw2')}`]);
      if (!kiln.info().cudaAvailable) {
        await bad({ models: { a: { path: 'bw1', precision: 'fp16' } } }, /serve\.json: models\.a: "precision" fp16 needs "device" cuda \(on the CPU use bf16\)/);
        await bad({ models: { a: { path: 'bw1', device: 'cuda' } } }, /serve\.json: models\.a: "device" cuda: CUDA is not available/);
        await bad({ precision: 'fp16', models: { a: { path: 'bw1' } } }, /^serve\.json: "precision" fp16 needs --device cuda/); // a file setting is named as the file's key
      }
      await bad({ models: { a: [{ path: 'bw1', default: true }, { path: 'bw2', version: '2', default: true }] } }, /serve\.json: models\.a: more than one version has "default": true/);
      await bad({ 'model-store': 'nostore', models: { a: { path: 'bw1' } } }, /^serve\.json: "model-store" \S+nostore is not a folder$/);
      await bad({ 'management-port': 9001, models: { a: { path: 'bw1' } } }, /^serve\.json: "management-port" must differ from --port \(both 9001\)$/, ['--port', '9001']);
      await bad({ models: { a: { path: 'nothere' } } }, /serve\.json: models\.a\.path: \S+nothere\S* does not exist/);
      fs.rmSync(file);
    });

    it('--access-log FILE: JSON lines appended, one per request; a file that cannot be opened is a usage error', async () => {
      const file = path.join(dir, 'access.jsonl');
      fs.writeFileSync(file, '{"kept":true}\n'); // appended to, not replaced
      // (named 'constructor': a name every JS object has a property for, which once broke the model table)
      const { child, found: [u, logged], output } = await startCli(['--model', `constructor=${dir}`, '--port', '0', '--access-log', file], [/listening on (http:\/\/\S+)/, /access log \(JSON lines\) → (\S+)/]);
      try {
        expect(logged).to.equal(file);
        expect((await call(u + '/predictions', await image(2))).status).to.equal(200);
        expect((await fetch(u + '/health', { headers: { 'x-request-id': 'probe-1' } })).status).to.equal(200);
      } finally {
        expect(await stopCli(child), output()).to.equal(0);
      }
      const lines = fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
      expect(lines[0]).to.deep.equal({ kept: true });
      const requests = lines.slice(1);
      expect(requests.map((l) => [l.method, l.path, l.status])).to.deep.equal([['POST', '/predictions', 200], ['GET', '/health', 200]]);
      expect(requests[1].id).to.equal('probe-1');
      await expectRejects(run(['serve', '--model', dir, '--access-log', path.join(dir, 'no', 'such', 'folder', 'a.log')]), 'USAGE', /^--access-log \S+a\.log: cannot open it for appending \(ENOENT\)$/);
    });

    it('has help and examples, and refuses a missing model or a busy port with one line', async () => {
      const help = spawnSync(process.execPath, [BIN, 'serve', '--help'], { encoding: 'utf8' });
      expect(help.stdout).to.include('--max-batch').and.include('--max-delay-ms').and.include('--timeout-ms').and.include('kiln serve --model');
      expect(spawnSync(process.execPath, [BIN, '--help'], { encoding: 'utf8' }).stdout).to.match(/serve\s+an HTTP inference server/);
      const none = spawnSync(process.execPath, [BIN, 'serve'], { encoding: 'utf8' });
      expect(none.status).to.equal(2);
      expect(none.stderr.trim()).to.match(/^kiln: error: --model is required/);
      const busy = net.createServer().listen(0, '127.0.0.1');
      await new Promise((r) => busy.once('listening', r));
      const port = (busy.address() as net.AddressInfo).port;
      const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const c = spawn(process.execPath, [BIN, 'serve', '--model', dir, '--port', String(port)], { stdio: ['ignore', 'ignore', 'pipe'] });
        let stderr = '';
        c.stderr.on('data', (d) => (stderr += d));
        c.on('close', (code) => resolve({ code, stderr }));
      });
      busy.close();
      expect(r.code).to.equal(2);
      expect(r.stderr.trim().split('\n')).to.have.length(1);
      expect(r.stderr).to.match(new RegExp(`--port ${port}: address 127\\.0\\.0\\.1:${port} is already in use`));
    });
  });
});

async function expectFetchFails(u: string): Promise<void> {
  let ok = false;
  try {
    await fetch(u);
    ok = true;
  } catch {
    // connection refused: the server is closed
  }
  expect(ok, `${u} still answers`).to.equal(false);
}
