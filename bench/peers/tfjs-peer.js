// TensorFlow.js peer of bench/tfjs.ts: the same CNNs as Kiln's simple-cnn and resnet18, built with
// tfjs-layers (NHWC), timed for a training step (forward, softmax cross-entropy, backward, Adam) and
// for inference, on one tfjs backend. Prints one JSON line per case (or per probe).
//
//   node tfjs-peer.js <prefix> <backend> <cases JSON> [threads]
//   node tfjs-peer.js <prefix> probe <backend> [threads]
//
// <prefix>: the folder whose node_modules holds @tensorflow/tfjs (bench/out/tfjs, installed on demand
// by bench/tfjs.ts, never a dependency of Kiln); <backend>: 'tensorflow' (tfjs-node), 'wasm' or 'cpu'.
'use strict';
const path = require('path');
const { createRequire } = require('module');

const [prefix, mode, ...rest] = process.argv.slice(2);
const req = createRequire(path.join(path.resolve(prefix), 'package.json'));

/** Loads tfjs for `backend` and makes it current; resolves to a description of what runs. */
async function setup(backend, threads) {
  if (backend === 'tensorflow') {
    const tf = req('@tensorflow/tfjs-node'); // registers the 'tensorflow' backend (libtensorflow)
    await tf.setBackend('tensorflow');
    return { tf, threads: 'libtensorflow default' };
  }
  const tf = req('@tensorflow/tfjs');
  if (backend === 'wasm') {
    const wasm = req('@tensorflow/tfjs-backend-wasm');
    // tfjs-backend-wasm turns threads off in Node (tfjs issue 3830); forcing the flag is the only way to ask.
    if (threads > 1) tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);
    wasm.setThreadsCount(threads);
    // tfjs only logs why a backend failed to start: keep those lines for the error
    const logged = [];
    const warn = console.warn, error = console.error;
    console.warn = console.error = (...a) => logged.push(a.map(String).join(' '));
    let ok;
    try { ok = await tf.setBackend('wasm'); } finally { console.warn = warn; console.error = error; }
    if (!ok) throw new Error(`tf.setBackend('wasm') failed: ${logged.filter((l) => !/^Initialization of backend/.test(l))[0] ?? logged[0] ?? 'no reason logged'}`);
    await tf.ready();
    const simd = await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT');
    return { tf, threads: wasm.getThreadsCount(), simd };
  }
  if (backend !== 'cpu') throw new Error(`unknown backend ${backend}`);
  await tf.setBackend('cpu');
  await tf.ready();
  return { tf, threads: 1 }; // the pure-JS backend runs on the main thread only
}

// ---- models (torch's default initialisation, so that weight statistics match Kiln's) ----

/** U(-1/sqrt(fanIn), 1/sqrt(fanIn)): torch's default for conv and linear weights and linear biases. */
const torchUniform = (tf, fanIn) => tf.initializers.randomUniform({ minval: -1 / Math.sqrt(fanIn), maxval: 1 / Math.sqrt(fanIn) });
/** torch BatchNorm2d (momentum 0.1, eps 1e-5) in Keras terms. */
const bn = (tf) => tf.layers.batchNormalization({ axis: -1, momentum: 0.9, epsilon: 1e-5 });

/**
 * Kiln's simpleCnn (width 32, poolSize 4, dropout 0.1): 4 × (conv3×3 no bias, BN, ReLU) with a 2×2 max
 * pool after the 2nd and 4th, adaptive average pool to 4×4, dropout, linear. tfjs-layers has no adaptive
 * pool: an exact one (7×7 → 4×4 windows [0,2) [1,4) [3,6) [5,7), as torch) is two matmuls.
 */
function simpleCnn(tf, size, channels, classes) {
  class AdaptiveAvgPool extends tf.layers.Layer {
    constructor(out) { super({}); this.out = out; }
    computeOutputShape(s) { return [s[0], this.out, this.out, s[3]]; }
    call(inputs) {
      return tf.tidy(() => {
        const x = Array.isArray(inputs) ? inputs[0] : inputs;
        const [n, h, w, c] = x.shape;
        const ph = poolMatrix(tf, h, this.out), pw = poolMatrix(tf, w, this.out);
        const t = x.transpose([0, 3, 1, 2]).reshape([n * c * h, w]).matMul(pw); // [n·c·h, out]
        const u = t.reshape([n, c, h, this.out]).transpose([0, 1, 3, 2]).reshape([n * c * this.out, h]).matMul(ph);
        return u.reshape([n, c, this.out, this.out]).transpose([0, 3, 2, 1]); // [n, i, j, c]
      });
    }
    static get className() { return 'AdaptiveAvgPool'; }
  }
  const w = 32, p = 4;
  const layers = [];
  const block = (inC, out, first) => {
    layers.push(tf.layers.conv2d({ filters: out, kernelSize: 3, padding: 'same', useBias: false, kernelInitializer: torchUniform(tf, inC * 9), ...(first ? { inputShape: [size, size, channels] } : {}) }));
    layers.push(bn(tf), tf.layers.reLU());
  };
  block(channels, w, true); block(w, w); layers.push(tf.layers.maxPooling2d({ poolSize: 2, strides: 2 }));
  block(w, 2 * w); block(2 * w, 2 * w); layers.push(tf.layers.maxPooling2d({ poolSize: 2, strides: 2 }));
  layers.push(new AdaptiveAvgPool(p), tf.layers.flatten(), tf.layers.dropout({ rate: 0.1 }));
  const fan = 2 * w * p * p;
  layers.push(tf.layers.dense({ units: classes, kernelInitializer: torchUniform(tf, fan), biasInitializer: torchUniform(tf, fan) }));
  return tf.sequential({ layers });
}

/** [in, out] matrix of torch's adaptive average pooling along one axis (column j averages its window). */
function poolMatrix(tf, n, out) {
  const m = new Float32Array(n * out);
  for (let j = 0; j < out; j++) {
    const s = Math.floor((j * n) / out), e = Math.ceil(((j + 1) * n) / out);
    for (let i = s; i < e; i++) m[i * out + j] = 1 / (e - s);
  }
  return tf.tensor2d(m, [n, out]);
}

/**
 * torchvision resnet18 in the functional API: 7×7/2 stem, BN, ReLU, 3×3/2 max pool, 4 stages of 2 basic
 * blocks (64, 128, 256, 512; 1×1/2 conv + BN shortcut when the shape changes), global average pool,
 * linear. Padding is 'same' (TF pads stride-2 layers 0/1 or 2/3 where torch pads 1/1 or 3/3: same
 * output shapes and FLOPs). Convs: kaiming normal (fan out, ReLU), as torchvision.
 */
function resnet18(tf, size, channels, classes) {
  const conv = (x, out, k, s) => tf.layers.conv2d({
    filters: out, kernelSize: k, strides: s, padding: 'same', useBias: false,
    kernelInitializer: tf.initializers.randomNormal({ mean: 0, stddev: Math.sqrt(2 / (k * k * out)) }),
  }).apply(x);
  const relu = (x) => tf.layers.reLU().apply(x);
  const input = tf.input({ shape: [size, size, channels] });
  let x = relu(bn(tf).apply(conv(input, 64, 7, 2)));
  x = tf.layers.maxPooling2d({ poolSize: 3, strides: 2, padding: 'same' }).apply(x);
  let inC = 64;
  for (const [out, stride] of [[64, 1], [128, 2], [256, 2], [512, 2]])
    for (let b = 0; b < 2; b++) {
      const s = b === 0 ? stride : 1;
      const y = bn(tf).apply(conv(relu(bn(tf).apply(conv(x, out, 3, s))), out, 3, 1));
      const short = s !== 1 || inC !== out ? bn(tf).apply(conv(x, out, 1, s)) : x;
      x = relu(tf.layers.add().apply([y, short]));
      inC = out;
    }
  x = tf.layers.globalAveragePooling2d({}).apply(x);
  const out = tf.layers.dense({ units: classes, kernelInitializer: torchUniform(tf, 512), biasInitializer: torchUniform(tf, 512) }).apply(x);
  return tf.model({ inputs: input, outputs: out });
}

const builders = { 'simple-cnn': simpleCnn, resnet18 };

// ---- timing ----

/**
 * Median seconds of up to `iters` calls of the async fn after `warmup` calls; stops early once the timed
 * calls took `capSeconds` (at least one timed call). Each call must read its result back itself.
 */
async function timed(fn, iters, warmup, capSeconds) {
  for (let i = 0; i < warmup; i++) await fn();
  const ts = [];
  let spent = 0;
  while (ts.length < iters && (ts.length === 0 || spent < capSeconds)) {
    const s = process.hrtime.bigint();
    await fn();
    const t = Number(process.hrtime.bigint() - s) / 1e9;
    ts.push(t);
    spent += t;
  }
  ts.sort((a, b) => a - b);
  return { seconds: ts[Math.floor(ts.length / 2)], runs: ts.length };
}

async function runCase(tf, c, backend) {
  // the pure-JS backend takes seconds per call at batch 128+ and has nothing to compile: one warm-up call
  const warmup = backend === 'cpu' ? Math.min(1, c.warmup) : c.warmup;
  const model = builders[c.model](tf, c.size, c.channels, c.classes);
  const trainable = model.trainableWeights.reduce((n, w) => n + w.shape.reduce((a, b) => a * b, 1), 0);
  const x = tf.randomNormal([c.batch, c.size, c.size, c.channels]);
  const before = tf.memory().numTensors;
  let r;
  if (c.kind === 'infer') {
    r = await timed(async () => {
      const y = model.predict(x); // training: false (BN uses running statistics, no dropout)
      await y.data();
      y.dispose();
    }, c.iters, warmup, c.capSeconds);
  } else {
    const labels = tf.randomUniform([c.batch], 0, c.classes, 'int32');
    const y = tf.oneHot(labels, c.classes);
    labels.dispose();
    const opt = tf.train.adam(1e-3, 0.9, 0.999, 1e-8); // Kiln's (and torch's) Adam defaults
    r = await timed(async () => {
      const loss = opt.minimize(() => tf.losses.softmaxCrossEntropy(y, model.apply(x, { training: true })), true);
      await loss.data();
      loss.dispose();
    }, c.iters, warmup, c.capSeconds);
    // the optimizer's slots (created on the first step, during warm-up) and the labels stay until here
    y.dispose();
    opt.dispose();
  }
  const leaked = tf.memory().numTensors - before; // tensors a timed call left behind (should be 0)
  x.dispose();
  model.dispose();
  return { ...r, leakedTensors: leaked, trainableParams: trainable };
}

async function main() {
  if (mode === 'probe') {
    const [backend, threads] = rest;
    try {
      const s = await setup(backend, Number(threads ?? 1));
      console.log(JSON.stringify({ probe: backend, ok: true, threads: s.threads, simd: s.simd, version: s.tf.version.tfjs }));
    } catch (e) {
      console.log(JSON.stringify({ probe: backend, ok: false, error: String((e && e.message) || e).split('\n')[0].slice(0, 300) }));
    }
    return;
  }
  const [casesJson, threads] = rest;
  const s = await setup(mode, Number(threads ?? 1));
  for (const c of JSON.parse(casesJson)) {
    try {
      const r = await runCase(s.tf, c, mode);
      console.log(JSON.stringify({ name: c.name, backend: mode, threads: s.threads, version: s.tf.version.tfjs, ...r }));
    } catch (e) {
      let error = String((e && e.message) || e).split('\n')[0].slice(0, 300);
      // tfjs runs every kernel of a backend on that backend, without falling back to another one
      if (/not registered for backend/.test(error)) {
        error += ` (tfjs ${s.tf.version.tfjs} does not fall back to another backend for a missing kernel`;
        error += /Conv2DBackpropFilter/.test(error) ? `: no conv net trains on '${mode}')` : ')';
      }
      console.log(JSON.stringify({ name: c.name, backend: mode, error }));
    }
  }
}

main().then(() => process.exit(0), (e) => { console.error(e); process.exit(1); });
