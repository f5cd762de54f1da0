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
  async function direct(bytes: Buffer): Promise<number[]> {
    const d = await kiln.data.decodeImage(bytes, { size: [32, 32], channels: 3 });
    const norm = kiln.data.normalize(MEAN, STD);
    const p = kiln.tidy(() => kiln.noGrad(() => model.call(norm(kiln.tensor(d.data, { shape: [1, 3, 32, 32] }).float().div(255))).softmax(1)));
    const v = Array.from(p.dataSync() as Float32Array);
    p.dispose();
    return v;
  }

  describe('DynamicBatcher', () => {
    const inputs = (n: number) => Array.from({ length: n }, (_, i) => kiln.tidy(() => kiln.randn([3, 32, 32]).add(i)));

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
      const many = await b.submit(kiln.tidy(() => kiln.stack(xs.slice(0, 3))));
      expect(many.shape).to.deep.equal([3, 3]);
      [...xs, ...rows, many].forEach((t) => t.dispose());
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
      const before = kiln.memory();
      for (let round = 0; round < 40; round++) {
        const xs = inputs(50);
        const ps = xs.map((x, i) => b.submit(x, { timeoutMs: i % 10 === 0 ? 1e-3 : 0 }));
        xs.forEach((x) => x.dispose()); // safe: the batcher keeps its own reference
        for (const r of await Promise.allSettled(ps)) if (r.status === 'fulfilled') r.value.dispose();
      }
      await b.close();
      gc();
      const after = kiln.memory();
      expect(after.numTensors).to.equal(before.numTensors);
      expect(after.cpuBytes).to.equal(before.cpuBytes);
    });
  });

  describe('HTTP server', () => {
    let server: Server;
    let url: string;
    const post = async (p: string, body: Body | undefined, type?: string) => {
      const r = await fetch(url + p, { method: 'POST', body, headers: type ? { 'content-type': type } : {} });
      return { status: r.status, headers: r.headers, body: (await r.json()) as Record<string, any> };
    };
    const probs = (pred: { top: { index: number; probability: number }[] }) => {
      const p = new Array(3).fill(NaN);
      for (const t of pred.top) p[t.index] = t.probability;
      return p;
    };
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
      const count = Number(/^kiln_batch_size_count (\d+)/m.exec(text)![1]);
      const ones = Number(/^kiln_batch_size_bucket\{le="1"\} (\d+)/m.exec(text)![1]);
      expect(count - ones, text).to.be.greaterThan(0); // some batch held more than one image
      const sum = Number(/^kiln_batch_size_sum (\d+)/m.exec(text)![1]);
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
      gc();
      const after = kiln.memory();
      expect(after.numTensors).to.equal(before.numTensors);
      expect(after.cpuBytes).to.equal(before.cpuBytes);
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
      for (const name of ['kiln_http_requests_total{route="/predictions",method="POST",status="200"}', 'kiln_http_requests_total{route="/predictions",method="POST",status="415"}',
        'kiln_http_request_duration_seconds_bucket{route="/predictions",le="+Inf"}', 'kiln_batch_size_bucket{le="1"}', 'kiln_queue_depth 0', 'kiln_inflight_requests 1', 'kiln_inflight_batches 0', 'kiln_tensors_alive'])
        expect(text, name).to.include(name);
      expect(text).to.match(/# TYPE kiln_batch_size histogram/);
    });
  });

  describe('kiln serve', () => {
    it('starts, prints its URL, answers, and stops cleanly on SIGTERM', async () => {
      const child = spawn(process.execPath, [BIN, 'serve', '--model', dir, '--port', '0', '--max-delay-ms', '1', '--top', '2'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '', err = '';
      child.stderr.on('data', (d) => (err += d));
      const u = await new Promise<string>((resolve, reject) => {
        child.stdout.on('data', (d) => {
          out += d;
          const m = /listening on (http:\/\/\S+)/.exec(out);
          if (m) resolve(m[1]);
        });
        child.on('exit', () => reject(new Error(`kiln serve exited early: ${out}${err}`)));
      });
      const r = await fetch(u + '/predictions', { method: 'POST', body: await image(4), headers: { 'content-type': 'image/png' } });
      expect(r.status).to.equal(200);
      expect(((await r.json()) as { predictions: { top: unknown[] }[] }).predictions[0].top).to.have.length(2);
      child.kill('SIGTERM');
      const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
      expect(code, err).to.equal(0);
      expect(out).to.match(/SIGTERM: finishing in-flight requests[\s\S]*stopped/);
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
