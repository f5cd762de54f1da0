/** The Open Inference Protocol over gRPC (`grpcPort`, `kiln serve --grpc-port`): every method, raw and typed contents, errors, batching, drain, memory. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { expect } from 'chai';
import * as protobuf from 'protobufjs';
import * as grpc from '@grpc/grpc-js';
import * as kiln from '../lib';
import { Server, serve, BatchModel, grpcClient, InferenceClient, OPEN_INFERENCE_PROTO } from '../lib/serve';
import { expectClose, expectFlatMemory, startKilnServe, seededPng as image, directOutputs as direct } from './helpers';

const CLASSES = ['circle', 'square', 'triangle'];
const MEAN = [0.5, 0.45, 0.4], STD = [0.25, 0.2, 0.3];
const S = 16;
const BIN = path.resolve(__dirname, '..', '..', 'bin', 'kiln.js');

/** An FP32 input tensor of `x` [N, C, H, W] in fp32_contents. */
const fp32 = (x: kiln.Tensor) => ({ name: 'input', datatype: 'FP32', shape: x.shape, contents: { fp32_contents: Array.from(x.dataSync() as Float32Array) } });

/** The little-endian float32 bytes of `x`. */
const rawOf = (x: kiln.Tensor) => Buffer.from((x.dataSync() as Float32Array).slice().buffer);

/** The output named `name` of an answer, with its index (for raw_output_contents). */
function output(r: Record<string, any>, name: string): { o: Record<string, any>; i: number } {
  const i = r.outputs.findIndex((o: { name: string }) => o.name === name);
  return { o: r.outputs[i], i };
}

/** Float32 values of raw little-endian bytes. */
const floats = (b: Buffer) => Array.from(new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length)));

/** BYTES elements of raw bytes (4-byte little-endian length, then the bytes) as strings. */
function strings(b: Buffer): string[] {
  const out: string[] = [];
  for (let at = 0; at < b.length; ) {
    const n = b.readUInt32LE(at);
    out.push(b.subarray(at + 4, at + 4 + n).toString('utf8'));
    at += 4 + n;
  }
  return out;
}

/** The gRPC error a call fails with (fails the test when it succeeds). */
async function failure(p: Promise<unknown>): Promise<grpc.ServiceError> {
  try {
    await p;
  } catch (e) {
    return e as grpc.ServiceError;
  }
  throw new Error('expected the call to fail');
}

/** A health Watch of `service` on the server at `address`: the statuses seen so far, `until(n)` of them, the stream's end. */
function watchHealth(address: string, service: string): { seen: string[]; until(n: number): Promise<void>; ended: Promise<void>; close(): void } {
  const { grpc: g, health } = kiln.serving.grpcService();
  const hc = new health(address, g.credentials.createInsecure()) as unknown as { Watch(req: object): NodeJS.ReadableStream; close(): void };
  const seen: string[] = [];
  const stream = hc.Watch({ service });
  const ended = new Promise<void>((resolve) => {
    stream.on('data', (m: { status: string }) => seen.push(m.status));
    stream.on('end', resolve);
    stream.on('error', resolve);
  });
  const until = async (n: number) => { while (seen.length < n) await new Promise((r) => setTimeout(r, 5)); };
  return { seen, until, ended, close: () => hc.close() };
}

describe('serve: Open Inference Protocol over gRPC', function () {
  this.timeout(30000);
  let model: kiln.nn.Module, model2: kiln.nn.Module;
  let server: Server, client: InferenceClient;
  const opts = { classNames: CLASSES, inputSize: [S, S] as [number, number], channels: 3 as const, mean: MEAN, std: STD };

  before(async () => {
    kiln.manualSeed(1);
    model = kiln.models.simpleCnn({ numClasses: 3, inChannels: 3, width: 8 }).eval();
    model2 = kiln.models.simpleCnn({ numClasses: 3, inChannels: 3, width: 8 }).eval();
    server = await serve({ models: { shapes: [{ model, ...opts }, { model: model2, ...opts, version: '2', default: false }] }, port: 0, grpcPort: 0, maxDelayMs: 30, maxBodyBytes: 200_000 });
    server.setDefault('shapes', '1');
    client = grpcClient(server.grpcAddress);
  });
  after(async () => {
    client.close();
    await server.close();
    model.dispose();
    model2.dispose();
  });

  it('answers ServerLive, ServerReady, ServerMetadata, ModelReady and ModelMetadata as the REST routes do', async () => {
    expect(await client.serverLive()).to.deep.equal({ live: true });
    expect(await client.serverReady()).to.deep.equal({ ready: true });
    const rest = async (p: string) => (await fetch(server.url + p)).json();
    expect(await client.serverMetadata()).to.deep.equal(await rest('/v2'));
    for (const version of ['', '2']) {
      const meta = await client.modelMetadata({ name: 'shapes', version });
      expect(meta).to.deep.equal(await rest('/v2/models/shapes'));
      expect(meta.inputs[0].shape).to.deep.equal([-1, 3, S, S]); // int64 as numbers
      expect(await client.modelReady({ name: 'shapes', version })).to.deep.equal({ ready: true });
    }
    const unknown = await failure(client.modelReady({ name: 'nope' }));
    expect(unknown.code).to.equal(grpc.status.NOT_FOUND);
    expect(unknown.details).to.match(/no model named 'nope'/);
    expect((await failure(client.modelMetadata({ name: 'shapes', version: '9' }))).details).to.match(/no version '9'/);
  });

  it('serves the standard health service (grpc.health.v1): Check of the server and of a model, Watch until the server closes', async () => {
    expect(await client.health()).to.equal('SERVING');
    expect(await client.health('inference.GRPCInferenceService')).to.equal('SERVING');
    expect(await client.health('shapes')).to.equal('SERVING');
    const unknown = await failure(client.health('nope'));
    expect(unknown.code).to.equal(grpc.status.NOT_FOUND);
    expect(unknown.details).to.match(/no model named 'nope'/);
    // Watch: SERVING at once; NOT_SERVING and the end of the stream when the server closes
    const s = await serve(model, { ...opts, port: 0, grpcPort: 0 });
    const w = watchHealth(s.grpcAddress, '');
    await w.until(1);
    expect(w.seen).to.deep.equal(['SERVING']);
    await s.close();
    await w.ended;
    expect(w.seen).to.deep.equal(['SERVING', 'NOT_SERVING']);
    w.close();
    const text = server.metrics.render();
    expect(text).to.match(/kiln_grpc_requests_total\{method="Check",code="OK"\} [1-9]/);
    expect(text).to.match(/kiln_grpc_requests_total\{method="Check",code="NOT_FOUND"\} 1/);
  });

  it('Watch follows a model through register and unregister as they happen (every state, loading included)', async () => {
    const s = await serve(model, { ...opts, port: 0, grpcPort: 0 });
    const { seen, until, ended, close } = watchHealth(s.grpcAddress, 'extra');
    await until(1);
    expect(seen, 'not served yet').to.deep.equal(['SERVICE_UNKNOWN']);
    await s.register('extra', model2, { ...opts });
    await until(3);
    // the loading state lasts one warm-up batch: a poll would miss it, the registry's change notices do not
    expect(seen).to.deep.equal(['SERVICE_UNKNOWN', 'NOT_SERVING', 'SERVING']);
    await s.unregister('extra');
    await until(4);
    expect(seen[3]).to.equal('SERVICE_UNKNOWN');
    await s.close();
    await ended;
    expect(seen).to.deep.equal(['SERVICE_UNKNOWN', 'NOT_SERVING', 'SERVING', 'SERVICE_UNKNOWN', 'NOT_SERVING']);
    close();
  });

  it('infers FP32 contents: probabilities and logits equal model.call, id echoed, on the default and a named version', async () => {
    const x = kiln.randn([3, 3, S, S]);
    for (const [version, m] of [['', model], ['1', model], ['2', model2]] as const) {
      const r = await client.modelInfer({ model_name: 'shapes', model_version: version, id: 'req-7', inputs: [fp32(x)] });
      expect(r).to.include({ model_name: 'shapes', model_version: version || '1', id: 'req-7' });
      expect(r.raw_output_contents).to.deep.equal([]);
      const want = direct(m, x);
      const p = output(r, 'probabilities').o, l = output(r, 'logits').o;
      expect(p).to.include({ datatype: 'FP32' }).and.deep.include({ shape: [3, 3] });
      expectClose(p.contents.fp32_contents, want.probs, 1e-5, 1e-7);
      expectClose(l.contents.fp32_contents, want.logits, 1e-5, 1e-6);
    }
    // only the outputs asked for, in the order asked; one model served: model_name may be left out
    const one = await serve(model, { ...opts, port: 0, grpcPort: 0 });
    const c = grpcClient(one.grpcAddress);
    try {
      const r = await c.modelInfer({ inputs: [fp32(x)], outputs: [{ name: 'logits' }] });
      expect(r.outputs.map((o: { name: string }) => o.name)).to.deep.equal(['logits']);
      expectClose(r.outputs[0].contents.fp32_contents, direct(model, x).logits, 1e-5, 1e-6);
    } finally {
      c.close();
      await one.close();
    }
    x.dispose();
  });

  it('answers the classification extension (an int64_param) as BYTES "value:index:label"', async () => {
    const x = kiln.randn([2, 3, S, S]);
    const r = await client.modelInfer({ model_name: 'shapes', inputs: [fp32(x)], outputs: [{ name: 'probabilities', parameters: { classification: { int64_param: 2 } } }] });
    const { probs } = direct(model, x);
    const o = r.outputs[0];
    expect(o).to.deep.include({ datatype: 'BYTES', shape: [2, 2] });
    const got = o.contents.bytes_contents.map((b: Buffer) => b.toString('utf8').split(':'));
    for (let n = 0; n < 2; n++) {
      const row = probs.slice(3 * n, 3 * n + 3);
      const order = [0, 1, 2].sort((a, b) => row[b] - row[a]).slice(0, 2);
      expect(got.slice(2 * n, 2 * n + 2).map((g: string[]) => Number(g[1]))).to.deep.equal(order);
      expect(got.slice(2 * n, 2 * n + 2).map((g: string[]) => g[2])).to.deep.equal(order.map((i) => CLASSES[i]));
      expectClose(got.slice(2 * n, 2 * n + 2).map((g: string[]) => Number(g[0])), order.map((i) => row[i]), 1e-5, 1e-7);
    }
    x.dispose();
  });

  it('takes raw_input_contents and answers raw_output_contents (FP32 and BYTES), equal to the typed answer', async () => {
    const x = kiln.randn([2, 3, S, S]);
    const want = direct(model, x);
    const raw = await client.modelInfer({ model_name: 'shapes', inputs: [{ name: 'input', datatype: 'FP32', shape: [2, 3, S, S] }], raw_input_contents: [rawOf(x)],
      outputs: [{ name: 'logits' }, { name: 'probabilities', parameters: { classification: { int64_param: 1 } } }] });
    expect(raw.outputs.map((o: Record<string, unknown>) => o.contents)).to.deep.equal([null, null]);
    expect(raw.raw_output_contents).to.have.length(2);
    expectClose(floats(raw.raw_output_contents[0]), want.logits, 1e-5, 1e-6);
    const top = strings(raw.raw_output_contents[1]);
    expect(top).to.have.length(2);
    expect(top.map((s) => s.split(':')[2])).to.deep.equal([0, 1].map((n) => CLASSES[want.probs.slice(3 * n, 3 * n + 3).indexOf(Math.max(...want.probs.slice(3 * n, 3 * n + 3)))]));
    // typed input, raw answer on request
    const asked = await client.modelInfer({ model_name: 'shapes', inputs: [fp32(x)], parameters: { binary_data_output: { bool_param: true } } });
    expectClose(floats(asked.raw_output_contents[output(asked, 'probabilities').i]), want.probs, 1e-5, 1e-7);
    // BYTES images: typed (bytes_contents, the encoded image itself) and raw (length-prefixed), as the predict route answers
    const png = await image(3);
    const len = Buffer.alloc(4);
    len.writeUInt32LE(png.length);
    const typed = await client.modelInfer({ model_name: 'shapes', inputs: [{ name: 'input', datatype: 'BYTES', shape: [2], contents: { bytes_contents: [png, png] } }], outputs: [{ name: 'probabilities' }] });
    const rawImg = await client.modelInfer({ model_name: 'shapes', inputs: [{ name: 'input', datatype: 'BYTES', shape: [1] }], raw_input_contents: [Buffer.concat([len, png])], outputs: [{ name: 'probabilities' }] });
    const pred = (await (await fetch(`${server.url}/predictions/shapes?top=3`, { method: 'POST', body: png, headers: { 'content-type': 'image/png' } })).json()) as { predictions: { top: { index: number; probability: number }[] }[] };
    const byIndex = [0, 0, 0];
    for (const t of pred.predictions[0].top) byIndex[t.index] = t.probability;
    expect(typed.outputs[0].shape).to.deep.equal([2, 3]);
    expectClose(typed.outputs[0].contents.fp32_contents.slice(0, 3), byIndex, 1e-6, 1e-7);
    expectClose(typed.outputs[0].contents.fp32_contents.slice(3), byIndex, 1e-6, 1e-7);
    expectClose(floats(rawImg.raw_output_contents[0]), byIndex, 1e-6, 1e-7);
    x.dispose();
  });

  it('batches concurrent gRPC and REST requests together and counts the calls in metrics', async () => {
    const png = await image(4);
    const x = kiln.randn([1, 3, S, S]);
    const count = (text: string) => Number(/^kiln_batch_size_count\{model="shapes",version="1"\} (\d+)/m.exec(text)?.[1] ?? 0);
    const before = count(await (await fetch(`${server.url}/metrics`)).text());
    const answers = await Promise.all([
      client.modelInfer({ model_name: 'shapes', inputs: [fp32(x)] }).then(() => 200),
      client.modelInfer({ model_name: 'shapes', inputs: [{ name: 'input', datatype: 'BYTES', shape: [1], contents: { bytes_contents: [png] } }] }).then(() => 200),
      fetch(`${server.url}/predictions/shapes`, { method: 'POST', body: png, headers: { 'content-type': 'image/png' } }).then((r) => r.status),
      fetch(`${server.url}/v2/models/shapes/infer`, { method: 'POST', body: JSON.stringify({ inputs: [{ name: 'input', shape: [1, 3, S, S], datatype: 'FP32', data: Array.from(x.dataSync() as Float32Array) }] }), headers: { 'content-type': 'application/json' } }).then((r) => r.status),
    ]);
    expect(answers).to.deep.equal([200, 200, 200, 200]);
    const text = await (await fetch(`${server.url}/metrics`)).text();
    expect(count(text) - before, 'four requests of one image each ran in fewer batches').to.be.lessThan(4);
    expect(text).to.match(/kiln_grpc_requests_total\{method="ModelInfer",code="OK",model="shapes",version="1"\} [1-9]/);
    expect(text).to.match(/kiln_grpc_requests_total\{method="ServerLive",code="OK"\} [1-9]/);
    expect(text).to.match(/kiln_grpc_request_duration_seconds_count\{method="ModelInfer",model="shapes",version="1"\} [1-9]/);
    x.dispose();
  });

  it('answers bad requests with the protocol status and a message naming the problem; the server lives on', async () => {
    const x = kiln.randn([1, 3, S, S]);
    const good = fp32(x);
    const I = grpc.status.INVALID_ARGUMENT;
    const infer = (req: Record<string, unknown>) => client.modelInfer({ model_name: 'shapes', ...req });
    const cases: [string, Promise<unknown>, grpc.status, RegExp][] = [
      ['shape', infer({ inputs: [{ ...good, shape: [1, 3, S, S + 1] }] }), I, /inputs\[0\]\.shape.*\[N, 3, 16, 16\].*got \[1, 3, 16, 17\]/],
      ['size', infer({ inputs: [{ ...good, shape: [2, 3, S, S] }] }), I, /needs 1536 values, the data holds 768/],
      ['datatype', infer({ inputs: [{ ...good, datatype: 'INT64' }] }), I, /datatype.*'FP32'.*'BYTES'.*INT64/],
      ['contents field', infer({ inputs: [{ ...good, contents: { int64_contents: [1, 2] } }] }), I, /contents\.int64_contents: the model takes FP32 data/],
      ['two fields', infer({ inputs: [{ ...good, contents: { ...good.contents, bytes_contents: [Buffer.from('x')] } }] }), I, /expected one field of data, got fp32_contents, bytes_contents/],
      ['FP32 in bytes', infer({ inputs: [{ ...good, contents: { bytes_contents: [Buffer.from('x')] } }] }), I, /FP32 data goes in fp32_contents or raw_input_contents/],
      ['contents and raw', infer({ inputs: [good], raw_input_contents: [rawOf(x)] }), I, /either contents or raw_input_contents, not both/],
      ['raw count', infer({ inputs: [{ ...good, contents: undefined }], raw_input_contents: [rawOf(x), rawOf(x)] }), I, /one entry per input \(1\), got 2/],
      ['raw size', infer({ inputs: [{ ...good, contents: undefined }], raw_input_contents: [Buffer.alloc(8)] }), I, /needs 3072 bytes, the raw data holds 8/],
      ['raw BYTES', infer({ inputs: [{ name: 'input', datatype: 'BYTES', shape: [1] }], raw_input_contents: [Buffer.from([9, 0, 0, 0, 1])] }), I, /BYTES element 0 of 9 bytes runs past/],
      ['NaN', infer({ inputs: [{ ...good, contents: { fp32_contents: [NaN, ...good.contents.fp32_contents.slice(1)] } }] }), I, /NaN or infinite/],
      ['input name', infer({ inputs: [{ ...good, name: 'x' }] }), I, /one input named 'input'/],
      ['no inputs', infer({ inputs: [] }), I, /inputs: expected one input tensor, got none/],
      ['two inputs', infer({ inputs: [good, good] }), I, /takes one input.*got 2/],
      ['output', infer({ inputs: [good], outputs: [{ name: 'softmax' }] }), I, /outputs\[0\]\.name.*'probabilities', 'logits'/],
      ['classification', infer({ inputs: [good], outputs: [{ name: 'logits', parameters: { classification: { int64_param: 0 } } }] }), I, /classification: expected a positive integer/],
      ['classification type', infer({ inputs: [good], outputs: [{ name: 'logits', parameters: { classification: { string_param: '2' } } }] }), I, /classification: expected a positive integer/],
      ['binary_data_output', infer({ inputs: [good], parameters: { binary_data_output: { int64_param: 1 } } }), I, /binary_data_output: expected a bool_param/],
      ['BYTES image', infer({ inputs: [{ name: 'input', datatype: 'BYTES', shape: [1], contents: { bytes_contents: [Buffer.from('hello')] } }] }), I, /inputs\[0\]\.data\[0\]: cannot decode/],
      ['unknown model', client.modelInfer({ model_name: 'nope', inputs: [good] }), grpc.status.NOT_FOUND, /no model named 'nope'/],
      ['unknown version', infer({ model_version: '9', inputs: [good] }), grpc.status.NOT_FOUND, /no version '9'/],
      ['too large', infer({ inputs: [{ ...good, contents: { fp32_contents: new Array(60000).fill(0.5) } }] }), grpc.status.RESOURCE_EXHAUSTED, /larger than max|exceeds/i],
    ];
    const errors = cases.map(([, p]) => failure(p)); // handled at once: the calls run side by side
    for (const [i, [what, , code, re]] of cases.entries()) {
      const e = await errors[i];
      expect(e.code, `${what}: ${e.details}`).to.equal(code);
      expect(e.details, what).to.match(re);
    }
    expect((await client.modelInfer({ model_name: 'shapes', inputs: [good] })).outputs).to.have.length(2);
    // a raw client sending bytes that are not a ModelInferRequest
    const raw = new grpc.Client(server.grpcAddress, grpc.credentials.createInsecure());
    const garbage = await new Promise<grpc.ServiceError | null>((resolve) =>
      raw.makeUnaryRequest('/inference.GRPCInferenceService/ModelInfer', (b: Buffer) => b, (b: Buffer) => b, Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]), (e) => resolve(e)));
    raw.close();
    expect(garbage?.code).to.equal(grpc.status.INTERNAL);
    expect(await client.serverLive()).to.deep.equal({ live: true });
    x.dispose();
  });

  it('overload is UNAVAILABLE, a deadline is DEADLINE_EXCEEDED (the request leaves the queue); close() answers calls in flight', async () => {
    let open = () => {};
    let held = false;
    let gate = Promise.resolve();
    const hold = () => { held = true; gate = new Promise<void>((r) => (open = () => { held = false; r(); })); };
    const slow: BatchModel = { forwardAsync: async (t) => { if (held) await gate; return model.forwardAsync(t); } };
    const s = await serve(slow, { ...opts, name: 'slow', port: 0, grpcPort: 0, maxQueue: 1 });
    const c = grpcClient(s.grpcAddress);
    const x = kiln.randn([1, 3, S, S]);
    const req = { model_name: 'slow', inputs: [fp32(x)] };
    try {
      hold();
      const first = c.modelInfer(req); // runs (held)
      while (s.batcher.inFlightBatches === 0) await new Promise((r) => setTimeout(r, 5));
      const late = failure(c.modelInfer(req, { timeoutMs: 200 })); // queued, then past its deadline
      while (s.batcher.queueDepth === 0) await new Promise((r) => setTimeout(r, 5));
      const third = await failure(c.modelInfer(req));
      expect(third.code).to.equal(grpc.status.UNAVAILABLE);
      expect(third.details).to.match(/overloaded: 1 images already queued \(maxQueue 1\)/);
      expect((await late).code).to.equal(grpc.status.DEADLINE_EXCEEDED);
      while (s.batcher.queueDepth > 0) await new Promise((r) => setTimeout(r, 5)); // the server dropped it too
      // close while `first` is held: it is still answered; new calls are refused
      const again = c.modelInfer(req);
      while (s.batcher.queueDepth === 0) await new Promise((r) => setTimeout(r, 5));
      const closing = s.close();
      await new Promise((r) => setTimeout(r, 50));
      open();
      expect((await first).outputs).to.have.length(2);
      expect((await again).outputs).to.have.length(2);
      await closing;
      expect((await failure(c.serverLive({ timeoutMs: 2000 }))).code).to.be.oneOf([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED]);
      const text = s.metrics.render();
      expect(text).to.not.include('kiln_grpc_requests_total{method="ModelInfer",code="INTERNAL"');
    } finally {
      open();
      c.close();
      await s.close();
      x.dispose();
    }
  });

  it('writes gRPC calls to the access log: method, status name, model, the request id (ModelInfer\'s id)', async () => {
    const entries: kiln.serving.AccessLogEntry[] = [];
    const s = await serve(model, { ...opts, name: 'logged', port: 0, grpcPort: 0, accessLog: (e) => entries.push(e) });
    const c = grpcClient(s.grpcAddress);
    try {
      const x = kiln.randn([1, 3, S, S]);
      await c.modelInfer({ model_name: 'logged', id: 'req-9', inputs: [fp32(x)] });
      await c.modelInfer({ model_name: 'logged', inputs: [{ ...fp32(x), name: 'x' }] }).catch(() => {});
      await c.serverLive();
      x.dispose();
      const g = entries.filter((e) => e.listener === 'grpc');
      expect(g.map((e) => [e.method, e.status])).to.deep.equal([['ModelInfer', 'OK'], ['ModelInfer', 'INVALID_ARGUMENT'], ['ServerLive', 'OK']]);
      expect(g[0]).to.include({ id: 'req-9', path: '/inference.GRPCInferenceService/ModelInfer', model: 'logged', version: '1', remote: '127.0.0.1' });
      expect(g[1].id).to.match(/^[0-9a-f-]{36}$/);
      expect(g[1]).to.include({ error: 'BAD_REQUEST', bytesIn: null, bytesOut: null });
      // the id travels back in the response metadata: the client's x-request-id, or the one the server made
      const { grpc: g2, service } = kiln.serving.grpcService();
      const raw = new service(s.grpcAddress, g2.credentials.createInsecure());
      const idOf = (md: grpc.Metadata) => new Promise<string>((resolve, reject) => {
        const call = (raw as unknown as Record<string, (...a: unknown[]) => grpc.ClientUnaryCall>).ServerLive({}, md, (e: Error | null) => { if (e) reject(e); });
        call.on('metadata', (m: grpc.Metadata) => resolve(String(m.get('x-request-id')[0])));
      });
      const asked = new g2.Metadata();
      asked.set('x-request-id', 'meta-5');
      expect(await idOf(asked)).to.equal('meta-5');
      const made = await idOf(new g2.Metadata());
      expect(made).to.match(/^[0-9a-f-]{36}$/);
      raw.close();
      await c.serverReady({ requestId: 'ready-1' }); // the client's option sends it
      while (entries.filter((e) => e.listener === 'grpc').length < 6) await new Promise((r) => setTimeout(r, 5));
      expect(entries.filter((e) => e.listener === 'grpc').slice(3).map((e) => e.id)).to.deep.equal(['meta-5', made, 'ready-1']);
    } finally {
      c.close();
      await s.close();
    }
  });

  it('leaks no tensors over many gRPC requests, good and bad', async () => {
    const png = await image(5);
    const x = kiln.randn([2, 3, S, S]);
    const reqs = [
      { model_name: 'shapes', inputs: [fp32(x)], outputs: [{ name: 'probabilities', parameters: { classification: { int64_param: 2 } } }, { name: 'logits' }] },
      { model_name: 'shapes', inputs: [{ name: 'input', datatype: 'FP32', shape: [2, 3, S, S] }], raw_input_contents: [rawOf(x)] },
      { model_name: 'shapes', inputs: [{ name: 'input', datatype: 'BYTES', shape: [2], contents: { bytes_contents: [png, png] } }] },
      { model_name: 'shapes', inputs: [{ name: 'input', datatype: 'BYTES', shape: [2], contents: { bytes_contents: [png, Buffer.from('hello')] } }] },
      { model_name: 'shapes', inputs: [{ ...fp32(x), shape: [1, 3, S, S] }] },
    ];
    const round = () => Promise.all(reqs.map((r) => client.modelInfer(r).catch((e: grpc.ServiceError) => e.code)));
    await expectFlatMemory(round);
    x.dispose();
  });

  it('checks grpcPort and grpcHost, and says when the port cannot be had', async () => {
    expect(() => new Server(model, { ...opts, grpcPort: 70000 })).to.throw(kiln.KilnError, /grpcPort: expected an integer 0 … 65535/);
    expect(() => new Server(model, { ...opts, grpcPort: 0, grpcHost: 5 as never })).to.throw(kiln.KilnError, /grpcHost/);
    const off = new Server(model, { ...opts });
    expect(() => off.grpcAddress).to.throw(kiln.KilnError, /gRPC is off: give grpcPort/);
    await off.close();
    const busy = Number(server.grpcAddress.split(':').pop());
    let err: unknown;
    try {
      await serve(model, { ...opts, port: 0, grpcPort: busy });
    } catch (e) {
      err = e;
    }
    expect(err).to.be.instanceOf(kiln.KilnError).and.to.have.property('code', 'GRPC_BIND');
    expect((err as Error).message).to.match(new RegExp(`could not listen on 127\\.0\\.0\\.1:${busy}`));
    expect(await client.serverLive()).to.deep.equal({ live: true }); // the running server is unharmed
  });

  it('kiln serve --grpc-port prints the address and answers; --print-proto prints a .proto that parses to the service', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-serve-grpc-'));
    kiln.saveModel(path.join(dir, 'model.safetensors'), model, {
      classNames: JSON.stringify(CLASSES), inputSize: JSON.stringify([S, S]), channels: '3', mean: JSON.stringify(MEAN), std: JSON.stringify(STD),
    });
    const srv = await startKilnServe(['--model', `shapes=${dir}`, '--port', '0', '--grpc-port', '0'], /gRPC on (\S+) /);
    const c = grpcClient(srv.url);
    try {
      const x = kiln.randn([1, 3, S, S]);
      const r = await c.modelInfer({ model_name: 'shapes', inputs: [fp32(x)], outputs: [{ name: 'probabilities' }] });
      expectClose(r.outputs[0].contents.fp32_contents, direct(model, x).probs, 1e-5, 1e-7);
      x.dispose();
    } finally {
      c.close();
      await srv.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
    expect(srv.output()).to.match(/kiln: stopped/);
    const proto = spawnSync(process.execPath, [BIN, 'serve', '--print-proto'], { encoding: 'utf8' });
    expect(proto.status, proto.stderr).to.equal(0);
    expect(proto.stdout).to.equal(OPEN_INFERENCE_PROTO);
    const svc = protobuf.parse(proto.stdout).root.lookupService('inference.GRPCInferenceService');
    expect(Object.keys(svc.methods)).to.deep.equal(['ServerLive', 'ServerReady', 'ModelReady', 'ServerMetadata', 'ModelMetadata', 'ModelInfer']);
    // the field numbers clients rely on
    const req = protobuf.parse(proto.stdout, { keepCase: true }).root.lookupType('inference.ModelInferRequest');
    expect(Object.fromEntries(Object.values(req.fields).map((f) => [f.name, f.id]))).to.deep.equal({ model_name: 1, model_version: 2, id: 3, parameters: 4, inputs: 5, outputs: 6, raw_input_contents: 7 });
    for (const [args, re] of [[['--grpc-host', '0.0.0.0', '--model', 'x'], /--grpc-host needs --grpc-port/], [['--grpc-port', '8080', '--model', 'x'], /--grpc-port must differ from --port/]] as const) {
      const bad = spawnSync(process.execPath, [BIN, 'serve', ...args], { encoding: 'utf8' });
      expect(bad.status).to.not.equal(0);
      expect(bad.stderr).to.match(re);
    }
  });
});
