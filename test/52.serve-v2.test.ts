/** The Open Inference Protocol (KServe v2 / Triton REST) routes of the server: metadata, health, /infer, errors, batching, memory, kiln serve. */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { expect } from 'chai';
import * as kiln from '../lib';
import { Server, serve, BatchModel } from '../lib/serve';
import { expectClose, expectFlatMemory, startKilnServe, seededPng as image, directOutputs as direct } from './helpers';

const CLASSES = ['circle', 'square', 'triangle'];
const MEAN = [0.5, 0.45, 0.4], STD = [0.25, 0.2, 0.3];
const S = 16;

/** POSTs (or GETs) and returns status, headers and the JSON answer. */
async function call(u: string, body?: unknown, { method = body === undefined ? 'GET' : 'POST', type = 'application/json', headers = {} as Record<string, string> } = {}) {
  const data = body === undefined ? undefined : typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
  const r = await fetch(u, { method, body: data, headers: data === undefined ? headers : { 'content-type': type, ...headers } });
  const text = await r.text();
  let json: Record<string, any>;
  try {
    json = JSON.parse(text);
  } catch {
    json = { raw: text };
  }
  return { status: r.status, headers: r.headers, body: json };
}

/** An FP32 v2 input of `x` [N, C, H, W]. */
const fp32 = (x: kiln.Tensor) => ({ name: 'input', shape: x.shape, datatype: 'FP32', data: Array.from(x.dataSync() as Float32Array) });

/** The output named `name` of an inference answer. */
const output = (body: Record<string, any>, name: string) => body.outputs.find((o: { name: string }) => o.name === name);

describe('serve: Open Inference Protocol (v2)', function () {
  this.timeout(30000);
  let model: kiln.nn.Module, model2: kiln.nn.Module;
  let server: Server, url: string;
  const opts = { classNames: CLASSES, inputSize: [S, S] as [number, number], channels: 3 as const, mean: MEAN, std: STD };

  before(async () => {
    kiln.manualSeed(1);
    model = kiln.models.simpleCnn({ numClasses: 3, inChannels: 3, width: 8 }).eval();
    model2 = kiln.models.simpleCnn({ numClasses: 3, inChannels: 3, width: 8 }).eval();
    server = await serve({ models: { shapes: [{ model, ...opts }, { model: model2, ...opts, version: '2', default: false }] }, port: 0, maxDelayMs: 30, maxBodyBytes: 200_000 });
    server.setDefault('shapes', '1');
    url = server.url;
  });
  after(async () => {
    await server.close();
    model.dispose();
    model2.dispose();
  });

  it('answers server metadata, liveness, readiness, model metadata and model readiness', async () => {
    expect((await call(`${url}/v2`)).body).to.deep.equal({ name: 'kiln', version: kiln.info().kilnVersion, extensions: ['classification', 'binary_tensor_data'] });
    expect(await call(`${url}/v2/health/live`)).to.include({ status: 200 }).and.nested.include({ 'body.live': true });
    expect(await call(`${url}/v2/health/ready`)).to.include({ status: 200 }).and.nested.include({ 'body.ready': true });
    const meta = { name: 'shapes', versions: ['1', '2'], platform: 'pytorch_libtorch', inputs: [{ name: 'input', datatype: 'FP32', shape: [-1, 3, S, S] }],
      outputs: [{ name: 'probabilities', datatype: 'FP32', shape: [-1, 3] }, { name: 'logits', datatype: 'FP32', shape: [-1, 3] }] };
    for (const p of ['/v2/models/shapes', '/v2/models/shapes/versions/2']) expect((await call(url + p)).body).to.deep.equal(meta);
    for (const p of ['/v2/models/shapes/ready', '/v2/models/shapes/versions/2/ready']) expect(await call(url + p)).to.deep.include({ status: 200, body: { name: 'shapes', ready: true } });
  });

  it('infers FP32 data: probabilities and logits equal model.call, id echoed, on the default and a named version', async () => {
    const x = kiln.randn([3, 3, S, S]);
    for (const [p, m, v] of [['/v2/models/shapes/infer', model, '1'], ['/v2/models/shapes/versions/2/infer', model2, '2']] as const) {
      const r = await call(url + p, { id: 'req-7', inputs: [fp32(x)] });
      expect(r.status, JSON.stringify(r.body)).to.equal(200);
      expect(r.body).to.include({ model_name: 'shapes', model_version: v, id: 'req-7' });
      const want = direct(m, x);
      expect(output(r.body, 'probabilities')).to.include({ datatype: 'FP32' }).and.deep.include({ shape: [3, 3] });
      expectClose(output(r.body, 'probabilities').data, want.probs, 1e-5, 1e-7);
      expectClose(output(r.body, 'logits').data, want.logits, 1e-5, 1e-6);
    }
    // nested data in the natural [N, C, H, W] layout is the same tensor; no id → no id
    const nested = await call(`${url}/v2/models/shapes/infer`, { inputs: [{ ...fp32(x), data: x.arraySync() }], outputs: [{ name: 'logits' }] });
    expect(nested.body).to.not.have.property('id');
    expect(nested.body.outputs.map((o: { name: string }) => o.name)).to.deep.equal(['logits']);
    expectClose(nested.body.outputs[0].data, direct(model, x).logits, 1e-5, 1e-6);
    x.dispose();
  });

  it('answers the classification extension as "value:index:label", the top classes of model.call', async () => {
    const x = kiln.randn([2, 3, S, S]);
    const r = await call(`${url}/v2/models/shapes/infer`, { inputs: [fp32(x)], outputs: [{ name: 'probabilities', parameters: { classification: 2 } }, { name: 'logits', parameters: { classification: 9 } }] });
    expect(r.status).to.equal(200);
    const { probs, logits } = direct(model, x);
    for (const [name, values, k] of [['probabilities', probs, 2], ['logits', logits, 3]] as const) {
      const o = output(r.body, name);
      expect(o).to.deep.include({ datatype: 'BYTES', shape: [2, k] });
      for (let n = 0; n < 2; n++) {
        const row = values.slice(3 * n, 3 * n + 3);
        const order = [0, 1, 2].sort((a, b) => row[b] - row[a]).slice(0, k);
        const got = o.data.slice(k * n, k * n + k).map((s: string) => s.split(':'));
        expect(got.map((g: string[]) => Number(g[1]))).to.deep.equal(order);
        expect(got.map((g: string[]) => g[2])).to.deep.equal(order.map((i) => CLASSES[i]));
        expectClose(got.map((g: string[]) => Number(g[0])), order.map((i) => row[i]), 1e-5, 1e-7);
      }
    }
    x.dispose();
  });

  it('infers BYTES images (base64) with the probabilities the predict route answers for the same image', async () => {
    const pngs = [await image(1), await image(2)];
    const r = await call(`${url}/v2/models/shapes/infer`, { inputs: [{ name: 'input', shape: [2], datatype: 'BYTES', data: pngs.map((b) => b.toString('base64')) }], outputs: [{ name: 'probabilities' }] });
    expect(r.status, JSON.stringify(r.body)).to.equal(200);
    expect(r.body.outputs[0].shape).to.deep.equal([2, 3]);
    for (let i = 0; i < 2; i++) {
      const pred = await call(`${url}/predictions/shapes?top=3`, pngs[i], { type: 'image/png' });
      const byIndex = [0, 0, 0];
      for (const t of pred.body.predictions[0].top) byIndex[t.index] = t.probability;
      expectClose(r.body.outputs[0].data.slice(3 * i, 3 * i + 3), byIndex, 1e-6, 1e-7);
    }
  });

  it('takes and answers the binary tensor data extension (FP32 and BYTES inputs), equal to the JSON answer', async () => {
    const x = kiln.randn([2, 3, S, S]);
    const raw = Buffer.from((x.dataSync() as Float32Array).buffer);
    const head = Buffer.from(JSON.stringify({ inputs: [{ name: 'input', shape: [2, 3, S, S], datatype: 'FP32', parameters: { binary_data_size: raw.length } }], parameters: { binary_data_output: true } }));
    const r = await fetch(`${url}/v2/models/shapes/infer`, { method: 'POST', body: Buffer.concat([head, raw]), headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(head.length) } });
    expect(r.status).to.equal(200);
    const body = Buffer.from(await r.arrayBuffer());
    const n = Number(r.headers.get('inference-header-content-length'));
    const doc = JSON.parse(body.subarray(0, n).toString());
    expect(doc.outputs.map((o: any) => [o.name, o.parameters.binary_data_size])).to.deep.equal([['probabilities', 24], ['logits', 24]]);
    expect(body.length).to.equal(n + 48);
    const floats = new Float32Array(body.buffer.slice(body.byteOffset + n, body.byteOffset + n + 48));
    const want = direct(model, x);
    expectClose(Array.from(floats.subarray(0, 6)), want.probs, 1e-5, 1e-7);
    expectClose(Array.from(floats.subarray(6)), want.logits, 1e-5, 1e-6);
    // a BYTES input in binary: 4-byte little-endian length, then the PNG
    const png = await image(3);
    const len = Buffer.alloc(4);
    len.writeUInt32LE(png.length);
    const h2 = Buffer.from(JSON.stringify({ inputs: [{ name: 'input', shape: [1], datatype: 'BYTES', parameters: { binary_data_size: png.length + 4 } }], outputs: [{ name: 'probabilities' }] }));
    const r2 = await call(`${url}/v2/models/shapes/infer`, Buffer.concat([h2, len, png]), { type: 'application/octet-stream', headers: { 'inference-header-content-length': String(h2.length) } });
    const r3 = await call(`${url}/v2/models/shapes/infer`, { inputs: [{ name: 'input', shape: [1], datatype: 'BYTES', data: [png.toString('base64')] }], outputs: [{ name: 'probabilities' }] });
    expect(r2.status).to.equal(200);
    expect(r2.body.outputs[0].data).to.deep.equal(r3.body.outputs[0].data);
    x.dispose();
  });

  it('batches concurrent v2 and v1 requests together and labels the route in metrics', async () => {
    const png = await image(4);
    const x = kiln.randn([1, 3, S, S]);
    const before = /^kiln_batch_size_count\{model="shapes",version="1"\} (\d+)/m.exec(await (await fetch(`${url}/metrics`)).text());
    const answers = await Promise.all([
      call(`${url}/v2/models/shapes/infer`, { inputs: [fp32(x)] }),
      call(`${url}/v1/models/shapes:predict`, { instances: [png.toString('base64')] }),
      call(`${url}/v2/models/shapes/infer`, { inputs: [{ name: 'input', shape: [1], datatype: 'BYTES', data: [png.toString('base64')] }] }),
      call(`${url}/predictions/shapes`, png, { type: 'image/png' }),
    ]);
    expect(answers.map((a) => a.status)).to.deep.equal([200, 200, 200, 200]);
    const text = await (await fetch(`${url}/metrics`)).text();
    const batches = Number(/^kiln_batch_size_count\{model="shapes",version="1"\} (\d+)/m.exec(text)![1]) - Number(before?.[1] ?? 0);
    expect(batches, 'four requests of one image each ran in fewer batches').to.be.lessThan(4);
    expect(text).to.match(/kiln_http_requests_total\{route="\/v2\/models\/:name\/infer",method="POST",status="200",model="shapes",version="1"\} [1-9]/);
    x.dispose();
  });

  it('answers bad requests with {"error"} naming the problem and the protocol statuses', async () => {
    const x = kiln.randn([1, 3, S, S]);
    const good = fp32(x);
    const u = `${url}/v2/models/shapes/infer`;
    const cases: [string, Promise<Awaited<ReturnType<typeof call>>>, number, RegExp][] = [
      ['shape', call(u, { inputs: [{ ...good, shape: [1, 3, S, S + 1] }] }), 400, /inputs\[0\]\.shape.*\[N, 3, 16, 16\].*got \[1, 3, 16, 17\]/],
      ['size', call(u, { inputs: [{ ...good, shape: [2, 3, S, S] }] }), 400, /needs 1536 values, the data holds 768/],
      ['datatype', call(u, { inputs: [{ ...good, datatype: 'INT64' }] }), 400, /datatype.*'FP32'.*'BYTES'.*INT64/],
      ['element', call(u, { inputs: [{ ...good, data: ['a', ...good.data.slice(1)] }] }), 400, /element 0 is string 'a'/],
      ['input name', call(u, { inputs: [{ ...good, name: 'x' }] }), 400, /one input named 'input'/],
      ['two inputs', call(u, { inputs: [good, good] }), 400, /takes one input.*got 2/],
      ['no inputs', call(u, { id: '1' }), 400, /inputs: expected a non-empty array/],
      ['output', call(u, { inputs: [good], outputs: [{ name: 'softmax' }] }), 400, /outputs\[0\]\.name.*'probabilities', 'logits'/],
      ['classification', call(u, { inputs: [good], outputs: [{ name: 'logits', parameters: { classification: 0 } }] }), 400, /classification: expected a positive integer/],
      ['id', call(u, { id: 5, inputs: [good] }), 400, /id: expected a string/],
      ['BYTES count', call(u, { inputs: [{ name: 'input', shape: [2], datatype: 'BYTES', data: ['iVBORw0KGgo='] }] }), 400, /needs 2 images, the data holds 1/],
      ['BYTES image', call(u, { inputs: [{ name: 'input', shape: [1], datatype: 'BYTES', data: ['aGVsbG8='] }] }), 400, /inputs\[0\]\.data\[0\]: cannot decode/],
      ['bad JSON', call(u, '{"inputs": ['), 400, /malformed JSON/],
      ['media type', call(u, 'x=1', { type: 'application/x-www-form-urlencoded' }), 415, /unsupported media type/],
      ['binary header', call(u, Buffer.from('{}'), { type: 'application/octet-stream' }), 400, /Inference-Header-Content-Length/],
      ['binary sizes', call(u, Buffer.concat([Buffer.from(JSON.stringify({ inputs: [{ name: 'input', shape: [1, 3, S, S], datatype: 'FP32', parameters: { binary_data_size: 8 } }] })), Buffer.alloc(8)]), { type: 'application/octet-stream', headers: { 'inference-header-content-length': String(JSON.stringify({ inputs: [{ name: 'input', shape: [1, 3, S, S], datatype: 'FP32', parameters: { binary_data_size: 8 } }] }).length) } }), 400, /needs 3072 bytes, the raw data holds 8/],
      ['too large', call(u, { inputs: [{ ...good, data: new Array(60000).fill(0.5) }] }), 413, /too large/],
      ['unknown model', call(`${url}/v2/models/nope/infer`, { inputs: [good] }), 404, /no model named 'nope'/],
      ['unknown version', call(`${url}/v2/models/shapes/versions/9/infer`, { inputs: [good] }), 404, /no version '9'/],
      ['unknown version (metadata)', call(`${url}/v2/models/shapes/versions/9`), 404, /no version '9'/],
      ['GET infer', call(u), 405, /GET .* not allowed: use POST/],
      ['POST metadata', call(`${url}/v2/models/shapes`, {}), 405, /use GET/],
      ['unknown route', call(`${url}/v2/models/shapes/explain`), 404, /no route GET/],
    ];
    for (const [what, p, status, re] of cases) {
      const r = await p;
      expect(r.status, `${what}: ${JSON.stringify(r.body)}`).to.equal(status);
      expect(Object.keys(r.body), what).to.deep.equal(['error']);
      expect(r.body.error, what).to.match(re);
    }
    x.dispose();
  });

  it('answers 503 with Retry-After when the queue is full (maxQueue), as the other routes', async () => {
    let open = () => {};
    const gate = new Promise<void>((r) => (open = r));
    let held = false;
    const slow: BatchModel = { forwardAsync: async (t) => { if (held) await gate; return model.forwardAsync(t); } };
    const s = await serve(slow, { ...opts, name: 'slow', port: 0, maxQueue: 1 });
    try {
      held = true;
      const x = kiln.randn([1, 3, S, S]);
      const body = { inputs: [fp32(x)] };
      const first = call(`${s.url}/v2/models/slow/infer`, body); // runs (held)
      await new Promise((r) => setTimeout(r, 50));
      const second = call(`${s.url}/v2/models/slow/infer`, body); // queued
      await new Promise((r) => setTimeout(r, 50));
      const third = await call(`${s.url}/v2/models/slow/infer`, body);
      expect(third.status).to.equal(503);
      expect(third.headers.get('retry-after')).to.equal('1');
      expect(third.body.error).to.match(/overloaded/);
      open();
      expect((await first).status).to.equal(200);
      expect((await second).status).to.equal(200);
      x.dispose();
    } finally {
      await s.close();
    }
  });

  it('leaks no tensors over many v2 requests, good and bad', async () => {
    const png = (await image(5)).toString('base64');
    const x = kiln.randn([2, 3, S, S]);
    const bodies = [
      { inputs: [fp32(x)], outputs: [{ name: 'probabilities', parameters: { classification: 2 } }, { name: 'logits' }] },
      { inputs: [{ name: 'input', shape: [2], datatype: 'BYTES', data: [png, png] }] },
      { inputs: [{ name: 'input', shape: [2], datatype: 'BYTES', data: [png, 'aGVsbG8='] }] },
      { inputs: [{ ...fp32(x), shape: [1, 3, S, S] }] },
    ];
    const round = () => Promise.all(bodies.map((b) => call(`${url}/v2/models/shapes/infer`, b)));
    await expectFlatMemory(round);
    x.dispose();
  });

  it('kiln serve prints the v2 route and answers it', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-serve-v2-'));
    kiln.saveModel(path.join(dir, 'model.safetensors'), model, {
      classNames: JSON.stringify(CLASSES), inputSize: JSON.stringify([S, S]), channels: '3', mean: JSON.stringify(MEAN), std: JSON.stringify(STD),
    });
    const srv = await startKilnServe(['--model', `shapes=${dir}`, '--port', '0'], /POST (http:\/\/\S+)\/v2\/models\/shapes\/infer/);
    try {
      const u = srv.url;
      const x = kiln.randn([1, 3, S, S]);
      const r = await call(`${u}/v2/models/shapes/infer`, { inputs: [fp32(x)], outputs: [{ name: 'probabilities' }] });
      expect(r.status).to.equal(200);
      expectClose(r.body.outputs[0].data, direct(model, x).probs, 1e-5, 1e-7);
      x.dispose();
    } finally {
      await srv.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('serve: a calibrated model (temperature)', function () {
  this.timeout(60000);
  const opts = { classNames: CLASSES, inputSize: [S, S] as [number, number], channels: 3 as const, mean: MEAN, std: STD };

  it('divides the logits by the temperature (option or metadata): v2 logits and probabilities, predictions, explanations on both threads, /models', async () => {
    kiln.manualSeed(3);
    const model = kiln.models.simpleCnn({ numClasses: 3, inChannels: 3, width: 8 }).eval();
    const meta = { classNames: JSON.stringify(CLASSES), inputSize: JSON.stringify([S, S]), channels: '3', mean: JSON.stringify(MEAN), std: JSON.stringify(STD), temperature: '0.4' };
    const server = await serve({ models: { t: [{ model, ...opts, temperature: 2.5 }, { model, metadata: meta, version: '2', default: false, explainThread: 'main' }] }, port: 0, maxDelayMs: 5 });
    try {
      const x = kiln.randn([2, 3, S, S]);
      const raw = direct(model, x);
      for (const [v, T] of [['1', 2.5], ['2', 0.4]] as const) {
        const r = await call(`${server.url}/v2/models/t/versions/${v}/infer`, { inputs: [fp32(x)] });
        expect(r.status, JSON.stringify(r.body)).to.equal(200);
        const logits = raw.logits.map((l) => l / T);
        const probs = [0, 1].flatMap((i) => {
          const row = logits.slice(3 * i, 3 * i + 3), mx = Math.max(...row), e = row.map((l) => Math.exp(l - mx)), s = e.reduce((a, b) => a + b);
          return e.map((u) => u / s);
        });
        expectClose(output(r.body, 'logits').data, logits, 1e-5, 1e-6);
        expectClose(output(r.body, 'probabilities').data, probs, 1e-5, 1e-7);
        const info = (await call(`${server.url}/models/t/${v}`)).body;
        expect((Array.isArray(info) ? info[0] : info).temperature, `/models of version ${v}`).to.equal(T);
        // an image: /predictions answers what v2 answers for the same bytes; the explanation's probability is the top one
        const png = await image(4);
        const pred = await call(`${server.url}/predictions/t/${v}?top=3`, png, { type: 'image/png' });
        const byBytes = await call(`${server.url}/v2/models/t/versions/${v}/infer`, { inputs: [{ name: 'input', shape: [1], datatype: 'BYTES', data: [png.toString('base64')] }], outputs: [{ name: 'probabilities' }] });
        const byIndex = [0, 0, 0];
        for (const t of pred.body.predictions[0].top) byIndex[t.index] = t.probability;
        expectClose(byBytes.body.outputs[0].data, byIndex, 1e-6, 1e-7);
        const ex = await call(`${server.url}/explanations/t/${v}?method=saliency&format=json`, png, { type: 'image/png' });
        expect(ex.status, JSON.stringify(ex.body)).to.equal(200);
        expect(ex.body.explanations[0].predicted.probability, `explanation of version ${v}`).to.be.closeTo(Math.max(...byIndex), 1e-5);
      }
      x.dispose();
    } finally {
      await server.close();
      model.dispose();
    }
  });

  it('refuses a temperature that is not a positive number, from the options or the metadata', () => {
    const model = kiln.models.simpleCnn({ numClasses: 3, inChannels: 3, width: 8 });
    try {
      for (const bad of [0, -1, NaN, Infinity, '2'])
        expect(() => new Server(model, { ...opts, temperature: bad as number }), String(bad)).to.throw(kiln.KilnError, /temperature: expected a finite number > 0/);
      const meta = { inputSize: JSON.stringify([S, S]), channels: '3' };
      expect(() => new Server(model, { metadata: { ...meta, temperature: '-3' } })).to.throw(kiln.KilnError, /metadata 'temperature': expected a finite number > 0 .*got number -3/);
      expect(() => new Server(model, { metadata: { ...meta, temperature: 'hot' } })).to.throw(kiln.KilnError, /metadata 'temperature' is not valid JSON/);
    } finally {
      model.dispose();
    }
  });
});
