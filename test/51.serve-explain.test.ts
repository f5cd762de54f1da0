/** Serving explanations: POST /explanations and :explain (PNG and JSON answers, errors, queue, metrics, memory). */
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { expect } from 'chai';
import sharp from 'sharp';
import * as kiln from '../lib';
import { Server, serve, BatchModel } from '../lib/serve';
import { ExplainQueue } from '../lib/serve/explain';
import { gaussianBlur } from '../lib/robust/filters';
import { parseArgs } from '../lib/cli/args';
import { SERVE_FLAGS } from '../lib/cli/serve';
import { expectRejects, expectClose, gc, tick, startKilnServe } from './helpers';

const E = kiln.explain;
const FIX = path.resolve(__dirname, '..', '..', 'test', 'fixtures');
const CLASSES = ['circle', 'square', 'triangle'];
const MEAN = [0.5, 0.45, 0.4], STD = [0.25, 0.2, 0.3];

/** A seeded RGB image of w×h as PNG bytes. */
async function image(seed: number, w = 32, h = 32): Promise<Buffer> {
  const raw = Buffer.alloc(w * h * 3);
  for (let i = 0; i < raw.length; i++) raw[i] = (i * (seed + 3) * 2654435761) >>> 24;
  return sharp(raw, { raw: { width: w, height: h, channels: 3 } }).png().toBuffer();
}

type Answer = { status: number; headers: Headers; body: Record<string, any>; bytes: Buffer };

/** One POST; the JSON body when the answer is JSON, the raw bytes always. */
async function post(u: string, body: string | Buffer, type = 'image/png'): Promise<Answer> {
  const r = await fetch(u, { method: 'POST', body, headers: { 'content-type': type } });
  const bytes = Buffer.from(await r.arrayBuffer());
  const isJson = (r.headers.get('content-type') ?? '').startsWith('application/json');
  return { status: r.status, headers: r.headers, body: isJson ? JSON.parse(bytes.toString('utf8')) : {}, bytes };
}

/** The server's preprocessing done by hand: decode → /255 → (x − mean) / std, [1, C, H, W]. */
async function inputOf(bytes: Buffer, size: number, mean = MEAN, std = STD): Promise<kiln.Tensor> {
  const d = await kiln.data.decodeImage(bytes, { size: [size, size], channels: 3 });
  return kiln.tidy(() => kiln.tensor(d.data, { shape: [1, 3, size, size] }).float().div(255)
    .sub(kiln.tensor(mean, { shape: [3, 1, 1] })).div(kiln.tensor(std, { shape: [3, 1, 1] })));
}

/** The image the server draws over: x · std + mean, clipped to [0, 1]. */
const unnormalized = (x: kiln.Tensor) => kiln.tidy(() => x.mul(kiln.tensor(STD, { shape: [3, 1, 1] })).add(kiln.tensor(MEAN, { shape: [3, 1, 1] })).clamp(0, 1));

/** A map [1, C, H, W] summed over channels as nested rows [H][W] (what the JSON answer holds). */
const rows = (attr: kiln.Tensor) => kiln.tidy(() => attr.sum(1).squeeze(0).arraySync() as number[][]);

/** A Module wrapper that busy-waits `delay` ms in every forward with gradients on (explanations; not predictions). */
class Slow extends kiln.nn.Module {
  delay = 0;
  constructor(readonly inner: kiln.nn.Module) {
    super();
    this.registerModule('inner', inner);
  }
  forward(x: kiln.Tensor): kiln.Tensor {
    if (kiln.isGradEnabled()) for (const t = performance.now(); performance.now() - t < this.delay;);
    return this.inner.call(x);
  }
}

/** An open connection to the server at `u`. */
function connect(u: string): Promise<net.Socket> {
  const { hostname, port } = new URL(u);
  return new Promise((resolve, reject) => {
    const sock = net.connect(Number(port), hostname, () => resolve(sock));
    sock.on('error', reject);
  });
}

/** The raw HTTP answer read from `sock` until the server closes it, with its status. */
function answerOf(sock: net.Socket): Promise<{ status: number; text: string }> {
  let text = '';
  sock.on('data', (d) => (text += d));
  return new Promise((resolve) => sock.on('close', () => resolve({ status: Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1]), text })));
}

/**
 * A JSON body of base64 images whose `ig&steps=512` explanation takes about `ms` on this machine: the cost of one image is
 * measured here (the direct computation on the main thread), so a fast machine gets more images rather than a race.
 */
async function slowExplainBody(model: kiln.nn.Module, ms: number): Promise<string> {
  const png = await image(8);
  const x = await inputOf(png, 32);
  const ig = () => kiln.tidy(() => void E.integratedGradients(model, x, { target: 0, steps: 512 }));
  ig(); // warm
  const t0 = performance.now();
  ig();
  const perImage = Math.max(performance.now() - t0, 0.1);
  x.dispose();
  const n = Math.min(512, Math.max(1, Math.ceil(ms / perImage)));
  return JSON.stringify({ instances: Array(n).fill(png.toString('base64')) });
}

function expectMemoryAt(before: kiln.MemoryInfo): void {
  gc();
  const after = kiln.memory();
  expect(after.numTensors, 'live tensors').to.equal(before.numTensors);
  expect(after.cpuBytes, 'live CPU bytes').to.equal(before.cpuBytes);
}

describe('serve: explanations', function () {
  this.timeout(60000);
  let model: kiln.nn.Module;
  let server: Server;
  let url: string;
  const opts = { classNames: CLASSES, inputSize: 32, channels: 3 as const, mean: MEAN, std: STD };

  before(async () => {
    kiln.manualSeed(1);
    model = kiln.models.simpleCnn({ numClasses: 3, inChannels: 3, width: 8 }).eval();
    server = await serve(model, { ...opts, name: 'shapes', port: 0 });
    url = server.url;
  });
  after(async () => {
    await server.close();
    model.dispose();
  });

  it('answers JSON maps equal to kiln.explain computed directly on the same input, for every method', async () => {
    const x = await inputOf(await image(3), 32);
    const nested = kiln.tidy(() => x.squeeze(0).arraySync());
    const logits = kiln.noGrad(() => model.call(x));
    const probs = kiln.tidy(() => Array.from(logits.softmax(1).dataSync() as Float32Array));
    logits.dispose();
    const predicted = probs.indexOf(Math.max(...probs));
    const img = unnormalized(x);
    const range = kiln.tidy(() => x.amax([0, 1, 2, 3]).item() - x.amin([0, 1, 2, 3]).item());
    const baselines = kiln.tidy(() => kiln.cat([kiln.zerosLike(img), gaussianBlur(img, 4)]).sub(kiln.tensor(MEAN, { shape: [3, 1, 1] })).div(kiln.tensor(STD, { shape: [3, 1, 1] })));
    // [method, query, target index sent (undefined: the predicted class), the direct computation]
    const cases: [string, string, number | undefined, (t: number) => kiln.Tensor][] = [
      ['gradcam', '', undefined, (t) => E.gradCam(model, x, { target: t })],
      ['ig', '&steps=8&target=triangle', 2, (t) => E.integratedGradients(model, x, { target: t, steps: 8 }).attributions],
      ['saliency', '&target=1', 1, (t) => E.saliency(model, x, { target: t })],
      ['smoothgrad', '&samples=3&target=0', 0, (t) => E.noiseTunnel(model, x, { target: t, samples: 3, stdevs: 0.15 * range })],
      ['gradientshap', '&samples=4', undefined, (t) => E.gradientShap(model, x, { target: t, baselines, samples: 4 }).attributions],
      ['occlusion', '&target=square', 1, (t) => E.occlusion(model, x, { target: t, window: [4, 4], strides: 2 })],
      ['deeplift', '', undefined, (t) => E.deepLift(model, x, { target: t })],
      ['guidedbackprop', '&target=2', 2, (t) => E.guidedBackprop(model, x, { target: t })],
      ['guidedgradcam', '', undefined, (t) => E.guidedGradCam(model, x, { target: t, layer: E.defaultCamLayer(model, x) })],
      ['ablation', '', undefined, (t) => E.featureAblation(model, x, { target: t, featureMask: E.gridMask(32, 32, { cell: 4 }) })],
      ['lime', '&samples=30&target=1', 1, (t) => E.lime(model, x, { target: t, featureMask: E.gridMask(32, 32, { cell: 4 }), samples: 30 })],
      ['kernelshap', '&samples=20', undefined, (t) => E.kernelShap(model, x, { target: t, featureMask: E.gridMask(32, 32, { cell: 4 }), samples: 20 })],
      ['shapley', '&samples=2', undefined, (t) => E.shapleyValueSampling(model, x, { target: t, featureMask: E.gridMask(32, 32, { cell: 4 }), samples: 2 })],
      ['lrp', '&target=0', 0, (t) => E.lrp(model, x, { target: t })],
    ];
    for (const [method, q, target, direct] of cases) {
      kiln.manualSeed(42);
      const r = await post(`${url}/explanations?method=${method}${q}`, JSON.stringify({ instances: [nested] }), 'application/json');
      expect(r.status, JSON.stringify(r.body)).to.equal(200);
      expect(r.body).to.include({ model: 'shapes', version: '1', method });
      const [e] = r.body.explanations;
      const t = target ?? predicted;
      expect(e.predicted.index, method).to.equal(predicted);
      expect(e.predicted.class).to.equal(CLASSES[predicted]);
      expectClose([e.predicted.probability], [probs[predicted]], 1e-6, 0);
      expect(e.target).to.deep.equal({ class: CLASSES[t], index: t });
      expect(e.shape).to.deep.equal([32, 32]);
      kiln.manualSeed(42);
      const want = kiln.tidy(() => direct(t));
      expect(e.attributions, method).to.deep.equal(rows(want)); // exact: the same computation on the same float32 input
      want.dispose();
      if (method === 'gradcam') expect(e.layer).to.equal(E.defaultCamLayer(model, x));
    }
    // options as JSON fields (they override the query)
    const f = await post(`${url}/v1/models/shapes:explain?method=gradcam`, JSON.stringify({ instances: [nested, nested], method: 'saliency', target: 'circle' }), 'application/json');
    expect(f.status, JSON.stringify(f.body)).to.equal(200);
    expect(f.body.method).to.equal('saliency');
    expect(f.body.explanations).to.have.length(2);
    const sal = kiln.tidy(() => E.saliency(model, x, { target: 0 }));
    for (const e of f.body.explanations) expect(e.attributions).to.deep.equal(rows(sal));
    for (const t of [x, img, baselines, sal]) t.dispose();
  });

  it('answers image bytes with an overlay PNG equal to explanationPixels of the direct Grad-CAM, on every explain route', async () => {
    const bytes = await image(5, 40, 50);
    const x = await inputOf(bytes, 32);
    const img = unnormalized(x);
    for (const [q, t] of [['target=triangle', 2], ['target=0', 0]] as const) {
      const want = kiln.tidy(() => E.heatmapPixels(E.gradCam(model, x, { target: t }), { image: img, sign: 'positive', size: [256, 256] }).squeeze(0));
      const wantPx = Buffer.from(want.dataSync() as Uint8Array);
      want.dispose();
      for (const route of ['/explanations', '/explanations/shapes', '/explanations/shapes/1', '/v1/models/shapes:explain', '/v1/models/shapes/versions/1:explain']) {
        const r = await post(`${url}${route}?${q}`, bytes);
        expect(r.status, r.bytes.toString()).to.equal(200);
        expect(r.headers.get('content-type')).to.equal('image/png');
        expect(r.headers.get('x-kiln-method')).to.equal('gradcam');
        expect(r.headers.get('x-kiln-target')).to.equal(`${t} ${CLASSES[t]}`);
        const { data, info } = await sharp(r.bytes).raw().toBuffer({ resolveWithObject: true });
        expect([info.width, info.height, info.channels]).to.deep.equal([256, 256, 3]);
        expect(data.equals(wantPx), route).to.equal(true);
      }
    }
    // the same image as a base64 JSON instance with format=png: the same PNG, in the JSON answer
    const png = await post(`${url}/explanations?target=triangle`, bytes);
    const j = await post(`${url}/explanations`, JSON.stringify({ instances: [bytes.toString('base64')], target: 2, format: 'png' }), 'application/json');
    expect(j.status).to.equal(200);
    expect(Buffer.from(j.body.explanations[0].png, 'base64').equals(png.bytes)).to.equal(true);
    // format=json on image bytes
    const asJson = await post(`${url}/explanations?format=json&method=saliency&target=1`, bytes);
    const sal = kiln.tidy(() => E.saliency(model, x, { target: 1 }));
    expect(asJson.body.explanations[0].attributions).to.deep.equal(rows(sal));
    for (const t of [x, img, sal]) t.dispose();
  });

  it('resolveTarget: names or indices; a model without class names takes indices below its output count', () => {
    expect(kiln.explain.resolveTarget('dog', ['cat', 'dog'])).to.equal(1);
    expect(kiln.explain.resolveTarget('1', ['cat', 'dog'])).to.equal(1);
    expect(() => kiln.explain.resolveTarget('2', ['cat', 'dog'])).to.throw(kiln.KilnError, /index below 2 \(classes: cat, dog\)/);
    // no class names: every index was refused ("below 0 (classes: )")
    expect(kiln.explain.resolveTarget(4, [], 10)).to.equal(4);
    expect(kiln.explain.resolveTarget('4', [], -1), 'outputs not known yet').to.equal(4);
    expect(() => kiln.explain.resolveTarget('10', [], 10)).to.throw(kiln.KilnError, /not a class index below 10 \(the model has no class names\)/);
    expect(() => kiln.explain.resolveTarget('dog', [], 10)).to.throw(kiln.KilnError, /no class names/);
  });

  it('answers bad options and bodies with 4xx JSON naming the problem', async () => {
    const png = await image(1);
    const cases: [string, string | Buffer, string, number, RegExp][] = [
      ['/explanations?method=lrp2', png, 'image/png', 400, /method must be one of ig, saliency, smoothgrad, gradientshap, gradcam, occlusion, deeplift, guidedbackprop, guidedgradcam, ablation, lime, kernelshap, shapley, lrp, got "lrp2"/],
      ['/explanations?target=hexagon', png, 'image/png', 400, /target 'hexagon' is neither a class name nor an index below 3 \(classes: circle, square, triangle\)/],
      ['/explanations?target=3', png, 'image/png', 400, /target '3' is neither/],
      ['/explanations?format=gif', png, 'image/png', 400, /format must be png or json, got "gif"/],
      ['/explanations?method=ig&steps=1', png, 'image/png', 400, /steps must be an integer from 2 to 512, got "1"/],
      ['/explanations?method=ig&steps=many', png, 'image/png', 400, /steps must be an integer/],
      ['/explanations?method=smoothgrad&samples=100000', png, 'image/png', 400, /samples must be an integer from 1 to 256/],
      ['/explanations?method=gradcam&steps=5', png, 'image/png', 400, /steps applies to method ig only/],
      ['/explanations?method=saliency&samples=5', png, 'image/png', 400, /samples applies to methods smoothgrad, gradientshap, lime, kernelshap, shapley only/],
      ['/explanations', JSON.stringify({ instances: [png.toString('base64')], target: [1] }), 'application/json', 400, /target must be a class name or index, got \[1\]/],
      ['/explanations', JSON.stringify({ instances: [png.toString('base64')], method: 3 }), 'application/json', 400, /method must be one of .*got 3/],
      ['/explanations', '{"instances": [', 'application/json', 400, /malformed JSON/],
      ['/explanations', JSON.stringify({ instances: [[[[0]]]] }), 'application/json', 400, /instances\[0\]: wrong shape \[1, 1, 1\]/],
      ['/explanations', Buffer.from('not an image'), 'image/png', 400, /cannot decode image/],
      ['/explanations', 'hello', 'text/plain', 415, /unsupported media type 'text\/plain'/],
      ['/explanations/other', png, 'image/png', 404, /no model named 'other'/],
      ['/explanations/shapes/7', png, 'image/png', 404, /no version '7'/],
    ];
    for (const [p, body, type, status, re] of cases) {
      const r = await post(url + p, body, type);
      expect(r.status, `${p}: ${r.bytes.toString()}`).to.equal(status);
      expect(r.body.error, p).to.match(re);
      expect(r.body.code).to.be.a('string');
    }
    const get = await fetch(url + '/explanations');
    expect(get.status).to.equal(405);
    expect(get.headers.get('allow')).to.equal('POST');
  });

  it('refuses methods a model cannot take with 400: hooks on TorchScript, DeepLift on GELU, a forwardAsync-only model', async () => {
    const script = kiln.jit.load(path.join(FIX, 'tiny_script.pt')).eval();
    const gelu = new kiln.nn.Sequential(new kiln.nn.Conv2d(3, 4, 3, { padding: 1 }), new kiln.nn.GELU(), new kiln.nn.Flatten(), new kiln.nn.Linear(4 * 6 * 6, 3)).eval();
    const asyncOnly: BatchModel = { forwardAsync: (x) => gelu.forwardAsync(x) };
    const small = { classNames: ['a', 'b', 'c'], inputSize: 6, channels: 3 as const, mean: MEAN, std: STD };
    const s = await serve({ models: { script: { model: script, ...small }, gelu: { model: gelu, ...small }, opaque: { model: asyncOnly, ...small } }, port: 0 });
    try {
      const png = await image(2, 6, 6);
      for (const method of ['gradcam', 'deeplift']) {
        const r = await post(`${s.url}/explanations/script?method=${method}`, png);
        expect(r.status).to.equal(400);
        expect(r.body.code).to.equal('NOT_EXPLAINABLE');
        expect(r.body.error).to.match(new RegExp(`model 'script' version '1': method '${method}' sets forward hooks.*needs a kiln.nn Module.*use ig, saliency, smoothgrad, gradientshap, occlusion`));
      }
      // ig and saliency work on TorchScript (its forward records input gradients): equal to kiln.explain directly
      const x = await inputOf(png, 6);
      for (const [method, direct] of [['saliency', () => E.saliency(script, x, { target: 1 })], ['ig', () => E.integratedGradients(script, x, { target: 1, steps: 6 }).attributions]] as const) {
        const r = await post(`${s.url}/explanations/script?method=${method}&target=b&format=json${method === 'ig' ? '&steps=6' : ''}`, png);
        expect(r.status, JSON.stringify(r.body)).to.equal(200);
        const want = kiln.tidy(direct);
        expect(r.body.explanations[0].attributions).to.deep.equal(rows(want));
        want.dispose();
      }
      const lr = await post(`${s.url}/explanations/gelu?method=lrp`, png);
      expect(lr.status).to.equal(400);
      expect(lr.body.error).to.match(/model 'gelu' version '1': lrp: layer '1' \(GELU\) has no propagation rule/);
      const dl = await post(`${s.url}/explanations/gelu?method=deeplift`, png);
      expect(dl.status).to.equal(400);
      expect(dl.body.error).to.match(/model 'gelu' version '1' cannot be explained by deeplift: .*module '1' is not supported: GELU has no DeepLift rule/);
      expect((await post(`${s.url}/explanations/gelu?method=gradcam`, png)).status).to.equal(200); // other methods still work
      const op = await post(`${s.url}/explanations/opaque?method=saliency`, png);
      expect(op.status).to.equal(400);
      expect(op.body.error).to.match(/model 'opaque' version '1' cannot be explained: it offers only forwardAsync/);
      expect((await post(`${s.url}/predictions/opaque`, png)).status).to.equal(200);
      x.dispose();
    } finally {
      await s.close();
      script.dispose();
      gelu.dispose();
    }
  });

  it('explainImage rejects bad arguments with clear KilnErrors, leaking nothing', async () => {
    const x = await inputOf(await image(1), 32);
    const img = unnormalized(x);
    const norm = (t: kiln.Tensor) => t;
    const script = kiln.jit.load(path.join(FIX, 'tiny_script.pt')).eval();
    const chw = x.squeeze(0);
    const before = kiln.memory().numTensors;
    const bad: [() => unknown, RegExp][] = [
      [() => E.explainImage(model, x, img, norm, { method: 'lrp2' as never }), /method.*ig, saliency, smoothgrad, gradientshap, gradcam, occlusion, deeplift/],
      [() => E.explainImage(script, x, img, norm, { method: 'gradcam' }), /method 'gradcam' sets forward hooks.*needs a kiln.nn Module/],
      [() => E.explainImage(model, chw, img, norm), /x must be one image \[1, C, H, W\], got shape \[3, 32, 32\]/],
      [() => E.explainImage(model, x, img, norm, { method: 'ig', steps: 1 }), /steps/],
      [() => E.explainImage(model, x, img, norm, { method: 'smoothgrad', samples: 0 }), /samples/],
      [() => E.explainImage(model, x, img, norm, { method: 'smoothgrad', stdevs: -1 }), /stdevs/],
      [() => E.explainImage(model, x, img, norm, { method: 'gradientshap', baselines: 'grey' as never }), /baselines/],
      [() => E.explainImage({} as never, x, img, norm), /model/],
      [() => E.resolveTarget('hexagon', CLASSES), /target 'hexagon' is neither a class name nor an index below 3/],
      [() => E.resolveTarget(3, CLASSES), /target '3'/],
    ];
    for (const [fn, re] of bad) expect(fn).to.throw(kiln.KilnError, re);
    expect(E.resolveTarget('triangle', CLASSES)).to.equal(2);
    expect(E.resolveTarget('1', CLASSES)).to.equal(1);
    expect(kiln.memory().numTensors).to.equal(before);
    const gone = kiln.tensor([1]);
    gone.dispose();
    expect(() => E.explainImage(model, gone, img, norm)).to.throw(kiln.KilnError, /disposed/);
    for (const t of [x, img, chw]) t.dispose();
    script.dispose();
  });

  it('ExplainQueue runs one job at a time in order, refuses past maxQueue and drops jobs past timeoutMs', async () => {
    const q = new ExplainQueue(2, 0);
    const order: number[] = [];
    const ps = [1, 2, 3].map((i) => q.submit(() => (order.push(i), i)));
    expect(q.busy).to.equal(true);
    expect(q.depth).to.equal(2); // the first has started, two wait
    await expectRejects(q.submit(() => 4), 'OVERLOADED', 'overloaded: 2 explanations already queued (maxExplainQueue 2)');
    expect(await Promise.all(ps)).to.deep.equal([1, 2, 3]);
    expect(order).to.deep.equal([1, 2, 3]);
    const failing = q.submit(() => { throw new kiln.KilnError('boom', 'INVALID_ARGUMENT'); });
    await expectRejects(failing, 'INVALID_ARGUMENT', 'boom');
    expect(await q.submit(() => 5)).to.equal(5); // a failed job does not stop the queue
    q.close();
    await expectRejects(q.submit(() => 6), 'CLOSED', 'closed');
    const t = new ExplainQueue(4, 20);
    const discarded: number[] = [];
    const slow = t.submit(() => { for (const s = performance.now(); performance.now() - s < 40;); return 7; }, (v) => discarded.push(v));
    const waiting = t.submit(() => 8);
    await expectRejects(slow, 'TIMEOUT', 'timed out after 20 ms (it finished after the limit)');
    expect(discarded).to.deep.equal([7]);
    await expectRejects(waiting, 'TIMEOUT', 'timed out after 20 ms waiting in the explanation queue');
    expect(() => new ExplainQueue(0, 0)).to.throw(kiln.KilnError, /maxExplainQueue/);
  });

  it('a flood of explanations gets 503 past maxExplainQueue and 504 past timeoutMs; predictions are answered meanwhile', async () => {
    const slow = new Slow(kiln.models.simpleCnn({ numClasses: 3, inChannels: 3, width: 8 })).eval();
    try {
      await flood(slow);
      await timeouts(slow);
    } finally {
      slow.dispose();
    }
  });

  async function flood(slow: Slow): Promise<void> {
    const s = await serve(slow, { ...opts, port: 0, maxExplainQueue: 1 });
    try {
      const png = await image(4);
      slow.delay = 150;
      // six requests written at once on connections the server has accepted, so that they reach it together
      const socks = await Promise.all(Array.from({ length: 6 }, () => connect(s.url)));
      const head = `POST /explanations?method=saliency&format=json HTTP/1.1\r\nhost: x\r\ncontent-type: image/png\r\ncontent-length: ${png.length}\r\nconnection: close\r\n\r\n`;
      const flood = socks.map((sock) => answerOf(sock));
      const connections = () => new Promise<number>((r) => s.http.getConnections((_e, n) => r(n)));
      while ((await connections()) < 6) await new Promise((r) => setTimeout(r, 2)); // accepted by the server
      for (const sock of socks) sock.write(Buffer.concat([Buffer.from(head), png]));
      const t0 = performance.now();
      await new Promise((r) => setTimeout(r, 20));
      const pred = await post(`${s.url}/predictions`, png);
      const predAt = performance.now() - t0;
      expect(pred.status).to.equal(200);
      const res = await Promise.all(flood);
      const lastAt = performance.now() - t0;
      const codes = res.map((r) => r.status);
      // one runs, one waits, the rest are refused (one more may come in once the first has run)
      expect(codes.filter((c) => c === 503).length, String(codes)).to.be.at.least(1);
      expect(codes.filter((c) => c === 200).length, String(codes)).to.be.at.least(2);
      expect(codes.every((c) => c === 200 || c === 503), String(codes)).to.equal(true);
      const over = res.find((r) => r.status === 503)!;
      expect(over.text).to.match(/retry-after: 1\r\n/i);
      expect(over.text).to.match(/overloaded: 1 explanations already queued \(maxExplainQueue 1\)/);
      expect(predAt, `prediction at ${predAt} ms, explanations done at ${lastAt} ms`).to.be.below(lastAt);
      const metrics = await (await fetch(s.url + '/metrics')).text();
      expect(metrics).to.include('kiln_explanations_total{model="model",version="1",method="saliency",status="503"}');
    } finally {
      await s.close();
    }
  }

  async function timeouts(slow: Slow): Promise<void> {
    const t = await serve(slow, { ...opts, port: 0, timeoutMs: 50 });
    try {
      const png = await image(4);
      const [a, b] = await Promise.all([1, 2].map(() => post(`${t.url}/explanations?method=saliency`, png)));
      expect([a.status, b.status]).to.deep.equal([504, 504]);
      expect(a.body.error + b.body.error).to.match(/explanation timed out after 50 ms/);
      slow.delay = 0;
      expect((await post(`${t.url}/explanations?method=saliency`, png)).status).to.equal(200);
    } finally {
      await t.close();
    }
  }

  it('lists the routes in /models, exports metrics, and is off (404) with explanations: false', async () => {
    const m = (await (await fetch(url + '/models/shapes')).json()) as Record<string, any>;
    expect(m.routes.explain).to.deep.equal(['/explanations/shapes/1', '/v1/models/shapes/versions/1:explain']);
    expect(m.explainQueue).to.deep.equal({ depth: 0, running: 0, maxExplainQueue: 8, thread: 'worker' });
    const text = await (await fetch(url + '/metrics')).text();
    const sv = 'model="shapes",version="1"';
    for (const line of [`kiln_explanations_total{${sv},method="gradcam",status="200"}`, `kiln_explanations_total{${sv},method="deeplift",status="200"}`,
      `kiln_explanations_total{${sv},method="gradcam",status="400"}`, `kiln_explanation_duration_seconds_bucket{${sv},method="occlusion",le="+Inf"}`,
      `kiln_explanation_duration_seconds_count{${sv},method="smoothgrad"}`, `kiln_explain_queue_depth{${sv}} 0`,
      `kiln_http_requests_total{route="/explanations",method="POST",status="200",${sv}}`, `kiln_http_requests_total{route="/v1/models/:name:explain",method="POST",status="200",${sv}}`])
      expect(text, line).to.include(line);
    const off = await serve(model, { ...opts, port: 0, explanations: false });
    try {
      const r = await post(`${off.url}/explanations`, await image(1));
      expect(r.status).to.equal(404);
      expect(r.body.error).to.match(/explanations are off for model 'model' version '1'/);
      expect((await post(`${off.url}/v1/models/model:explain`, await image(1))).status).to.equal(404);
      expect((await post(`${off.url}/predictions`, await image(1))).status).to.equal(200);
      const info = (await (await fetch(off.url + '/models/model')).json()) as Record<string, any>;
      expect(info.routes.explain).to.equal(undefined);
    } finally {
      await off.close();
    }
    expect(() => new Server(model, { ...opts, explanations: 'no' as never })).to.throw(kiln.KilnError, /explanations/);
    expect(() => new Server(model, { ...opts, maxExplainQueue: 0 })).to.throw(kiln.KilnError, /maxExplainQueue/);
    expect(parseArgs(['--no-explanations'], SERVE_FLAGS, 'serve').flags.explanations).to.equal(false);
    expect(parseArgs(['--explanations=false'], SERVE_FLAGS, 'serve').flags.explanations).to.equal(false);
    expect(parseArgs([], SERVE_FLAGS, 'serve').flags.explanations).to.equal(true);
  });

  it('leaks no tensors over many explanation requests, good and bad', async () => {
    const png = await image(6);
    const bodies: [string, string | Buffer, string][] = [
      ['?method=gradcam', png, 'image/png'], ['?method=ig&steps=4&format=json', png, 'image/png'], ['?method=deeplift', png, 'image/png'],
      ['?method=gradientshap&samples=2', JSON.stringify({ instances: [png.toString('base64')] }), 'application/json'],
      ['?method=occlusion&format=png', JSON.stringify({ instances: [png.toString('base64'), png.toString('base64')] }), 'application/json'],
      ['?method=lime', png, 'image/png'], ['?target=nope', png, 'image/png'], ['', Buffer.from('junk'), 'image/png'],
      ['', JSON.stringify({ instances: [png.toString('base64'), '@@'] }), 'application/json'],
    ];
    const round = () => Promise.all(bodies.map(([q, b, t]) => post(`${url}/explanations${q}`, b, t)));
    await round();
    gc();
    await tick(); // finalizers of what earlier tests left to the GC
    gc();
    const before = kiln.memory();
    for (let i = 0; i < 8; i++) await round();
    expectMemoryAt(before);
  });

  describe('on a worker thread', () => {
    it('answers predictions while a long explanation runs on the worker; the main thread would answer them after it', async () => {
      const png = await image(7);
      const longBody = await slowExplainBody(model, 1000); // five predictions take a few ms each
      for (const explainThread of ['worker', 'main'] as const) {
        const s = await serve(model, { ...opts, port: 0, explainThread });
        try {
          expect((await post(`${s.url}/explanations?method=saliency&format=json`, png)).status).to.equal(200); // the worker has started
          const t0 = performance.now();
          let explainedAt = 0;
          const long = post(`${s.url}/explanations?method=ig&steps=512&format=json`, longBody, 'application/json').then((r) => ((explainedAt = performance.now() - t0), r));
          while (!s.endpoint().explainQueue.busy) await tick(); // it has started
          const predictedAt: number[] = [];
          for (let i = 0; i < 5; i++) {
            expect((await post(`${s.url}/predictions`, png)).status).to.equal(200);
            predictedAt.push(performance.now() - t0);
          }
          expect((await long).status).to.equal(200);
          const last = Math.max(...predictedAt);
          if (explainThread === 'worker') expect(last, `predictions done at ${last.toFixed(0)} ms, the explanation at ${explainedAt.toFixed(0)} ms`).to.be.below(explainedAt);
          else expect(last, `predictions done at ${last.toFixed(0)} ms, the explanation at ${explainedAt.toFixed(0)} ms`).to.be.above(explainedAt);
        } finally {
          await s.close();
        }
      }
    });

    it('stops an explanation that runs past timeoutMs (504 at once) and answers the next one on a fresh worker', async () => {
      const s = await serve(model, { ...opts, port: 0, timeoutMs: 1000 });
      const ep = s.endpoint() as unknown as { explainWorker: { alive: boolean; starts: number } };
      try {
        const png = await image(8);
        const longBody = await slowExplainBody(model, 8000);
        expect((await post(`${s.url}/explanations?method=saliency&format=json`, png)).status).to.equal(200);
        expect(ep.explainWorker.starts).to.equal(1);
        // ig with 512 steps on enough images for about 8 s of work on this machine, stopped after 1 s
        const t0 = performance.now();
        const r = await post(`${s.url}/explanations?method=ig&steps=512`, longBody, 'application/json');
        const at = performance.now() - t0;
        expect(r.status).to.equal(504);
        expect(r.body.error).to.match(/explanation timed out after 1000 ms \(stopped while running\)/);
        expect(at, 'answered when the time ran out, not when the work would have ended').to.be.below(2500);
        const ok = await post(`${s.url}/explanations?method=saliency&format=json`, png);
        expect(ok.status, JSON.stringify(ok.body)).to.equal(200);
        expect(ep.explainWorker.starts, 'a fresh worker').to.equal(2);
        expect(ep.explainWorker.alive).to.equal(true);
        expect((await post(`${s.url}/predictions`, png)).status).to.equal(200);
        const text = await (await fetch(s.url + '/metrics')).text();
        expect(text).to.include('kiln_explanations_total{model="model",version="1",method="ig",status="504"}');
      } finally {
        await s.close();
      }
      expect(ep.explainWorker.alive, 'the worker ends with the server').to.equal(false);
    });

    it("copies the weights when the worker starts; 'auto' falls back to the main thread for a model the worker cannot rebuild", async () => {
      kiln.manualSeed(5);
      const m = kiln.models.simpleCnn({ numClasses: 3, inChannels: 3, width: 8 }).eval();
      const x = await inputOf(await image(9), 32);
      const nested = kiln.tidy(() => x.squeeze(0).arraySync());
      const body = JSON.stringify({ instances: [nested], method: 'saliency', target: 1 });
      const s = await serve(m, { ...opts, port: 0 });
      const warnings: string[] = [];
      const onWarning = (w: Error) => warnings.push(w.message);
      process.on('warning', onWarning);
      try {
        const first = await post(`${s.url}/explanations`, body, 'application/json');
        const want = kiln.tidy(() => E.saliency(m, x, { target: 1 }));
        expect(first.body.explanations[0].attributions).to.deep.equal(rows(want));
        want.dispose();
        // a buffer added after the model was made: the worker's rebuilt copy cannot take it
        m.registerBuffer('extra', kiln.zeros([2]));
        await (s.endpoint() as unknown as { explainWorker: { stop(): Promise<void> } }).explainWorker.stop();
        const again = await post(`${s.url}/explanations`, body, 'application/json');
        expect(again.status, JSON.stringify(again.body)).to.equal(200);
        expect(again.body.explanations[0].attributions).to.deep.equal(first.body.explanations[0].attributions);
        await tick();
        expect(warnings.join('\n')).to.match(/model 'model' version '1': the explanation worker could not rebuild the model: .*extra.*; its explanations run on the main thread/);
        expect(((await (await fetch(s.url + '/models/model')).json()) as Record<string, any>).explainQueue.thread).to.equal('main');
      } finally {
        process.off('warning', onWarning);
        await s.close();
      }
      // explainThread 'worker' answers 500 naming the cause instead
      const w = await serve(m, { ...opts, port: 0, explainThread: 'worker' });
      try {
        const r = await post(`${w.url}/explanations`, body, 'application/json');
        expect(r.status).to.equal(500);
        expect(r.body.error).to.match(/could not rebuild the model: .*extra/);
      } finally {
        await w.close();
        m.dispose();
        x.dispose();
      }
    });

    it("explainThread is checked: 'worker' needs a float32 zoo model without hooks", async () => {
      const slow = new Slow(kiln.models.simpleCnn({ numClasses: 3, inChannels: 3, width: 8 }));
      try {
        expect(() => new Server(slow, { ...opts, explainThread: 'worker' })).to.throw(kiln.KilnError, /explainThread 'worker': model 'model' cannot be explained on a worker thread: it is not a zoo model/);
        expect(() => new Server(model, { ...opts, explainThread: 'gpu' as never })).to.throw(kiln.KilnError, /explainThread/);
        const hooked = kiln.models.simpleCnn({ numClasses: 3, inChannels: 3, width: 8 });
        const off = hooked.registerForwardHook(() => undefined);
        expect(() => new Server(hooked, { ...opts, explainThread: 'worker' })).to.throw(kiln.KilnError, /it has forward hooks/);
        off();
        hooked.dispose();
        const s = await serve(slow, { ...opts, port: 0 });
        try {
          expect(((await (await fetch(s.url + '/models/model')).json()) as Record<string, any>).explainQueue.thread).to.equal('main');
        } finally {
          await s.close();
        }
      } finally {
        slow.dispose();
      }
      expect(parseArgs(['--explain-thread', 'main'], SERVE_FLAGS, 'serve').flags['explain-thread']).to.equal('main');
      expect(parseArgs([], SERVE_FLAGS, 'serve').flags['explain-thread']).to.equal('auto');
      expect(() => parseArgs(['--explain-thread', 'gpu'], SERVE_FLAGS, 'serve')).to.throw(/explain-thread/);
    });
  });

  it('kiln serve lists the explanations route at startup and answers it', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-serve-explain-'));
    kiln.saveModel(path.join(dir, 'model.safetensors'), model, {
      classNames: JSON.stringify(CLASSES), inputSize: JSON.stringify([32, 32]), channels: '3', mean: JSON.stringify(MEAN), std: JSON.stringify(STD),
    });
    const srv = await startKilnServe(['--model', dir, '--port', '0']);
    try {
      const u = srv.url;
      expect(srv.output()).to.include('POST /explanations?method=ig|saliency|smoothgrad|gradientshap|gradcam|occlusion|deeplift|guidedbackprop|guidedgradcam|ablation|lime|kernelshap|shapley|lrp (PNG heat map or JSON)');
      const r = await post(`${u}/explanations?target=square`, await image(2));
      expect(r.status).to.equal(200);
      expect(r.headers.get('x-kiln-target')).to.equal('1 square');
    } finally {
      await srv.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
