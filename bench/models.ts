/**
 * Model-level speed, Kiln vs Python PyTorch eager on the same device in the same run:
 * torchvision resnet18 inference throughput (images/s) and a training step (SGD, cross-entropy), and
 * convnext_tiny inference (LayerNorm, GELU and depthwise 7×7 convs instead of batch norm and ReLU).
 * Device: BENCH_DEVICE (default cpu). On the CPU the sizes are small; on CUDA they follow issue 6.
 */
import * as path from 'path';
import * as kiln from '../lib';
import { N } from '../lib/native';
import { runPeer, pythonWithTorch, machine, table, record, medianSeconds, ROOT } from './harness';

const DEVICE = (process.env.BENCH_DEVICE ?? 'cpu') as kiln.Device;
const GPU = DEVICE !== 'cpu';

/**
 * `graph`: Kiln and PyTorch both replay a CUDA graph; `compile`: Kiln's CUDA graph vs PyTorch's torch.compile (the next
 * bar); `enqueue`: only the host's time to issue the forward (the GPU is idle when it starts and waited for after the
 * timer stops) — the per-op cost of each side, where a small batch is launch-bound; `native`: Kiln runs the model's
 * compiled native program (what `forwardAsync` and the server run; no JS between ops), PyTorch the same eager forward.
 * `part` (training): time only the forward and loss ('forward'), or those and the backward pass ('backward') — no
 * optimizer step — to tell which part of a recorded step a difference between the two sides comes from.
 * `optimizer` (training): AdamW instead of Nesterov SGD, as the multi-tensor step or (`'adamw-fused'`) PyTorch's fused
 * kernels on both sides.
 * `optimize`: both sides freeze the model and run libtorch's inference optimisation on it (Kiln
 * `kiln.jit.optimizeForInference`, PyTorch `torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(...)))`).
 */
interface Case { name: string; model?: 'resnet18' | 'convnext_tiny' | 'mobilenet_v3_small'; kind: 'infer' | 'train'; batch: number; size: number; bf16?: boolean; graph?: boolean; compile?: boolean; enqueue?: boolean; native?: boolean; part?: 'forward' | 'backward'; optimizer?: 'adamw' | 'adamw-fused'; optimize?: boolean; iters: number; warmup: number }

const CASES: Case[] = GPU
  ? [
      { name: 'resnet18 infer 224² b1 fp32', kind: 'infer', batch: 1, size: 224, iters: 200, warmup: 20 },
      { name: 'resnet18 infer 224² b1 fp32, host enqueue only', kind: 'infer', batch: 1, size: 224, enqueue: true, iters: 200, warmup: 20 },
      { name: 'resnet18 infer 224² b1 fp32, Kiln native program', kind: 'infer', batch: 1, size: 224, native: true, iters: 200, warmup: 20 },
      { name: 'resnet18 infer 224² b32 fp32', kind: 'infer', batch: 32, size: 224, iters: 30, warmup: 5 },
      { name: 'resnet18 infer 224² b1 fp32, optimised (both)', kind: 'infer', batch: 1, size: 224, optimize: true, iters: 200, warmup: 20 },
      { name: 'resnet18 infer 224² b32 fp32, optimised (both)', kind: 'infer', batch: 32, size: 224, optimize: true, iters: 30, warmup: 5 },
      { name: 'resnet18 infer 224² b256 fp32', kind: 'infer', batch: 256, size: 224, iters: 10, warmup: 3 },
      { name: 'resnet18 infer 224² b256 bf16', kind: 'infer', batch: 256, size: 224, bf16: true, iters: 10, warmup: 3 },
      { name: 'convnext_tiny infer 224² b32 fp32', model: 'convnext_tiny', kind: 'infer', batch: 32, size: 224, iters: 20, warmup: 5 },
      { name: 'convnext_tiny infer 224² b32 bf16', model: 'convnext_tiny', kind: 'infer', batch: 32, size: 224, bf16: true, iters: 20, warmup: 5 },
      { name: 'resnet18 train step 32² b512', kind: 'train', batch: 512, size: 32, iters: 20, warmup: 5 },
      { name: 'resnet18 train step 32² b32', kind: 'train', batch: 32, size: 32, iters: 30, warmup: 5 },
      { name: 'resnet18 train step 32² b512, CUDA graph (both)', kind: 'train', batch: 512, size: 32, graph: true, iters: 20, warmup: 5 },
      { name: 'resnet18 train step 32² b32, CUDA graph (both)', kind: 'train', batch: 32, size: 32, graph: true, iters: 30, warmup: 5 },
      { name: 'resnet18 train step 32² b512, AdamW', kind: 'train', batch: 512, size: 32, optimizer: 'adamw', iters: 20, warmup: 5 },
      { name: 'resnet18 train step 32² b512, AdamW fused (both)', kind: 'train', batch: 512, size: 32, optimizer: 'adamw-fused', iters: 20, warmup: 5 },
      { name: 'resnet18 train 32² b32, CUDA graph (both): forward + loss only', kind: 'train', batch: 32, size: 32, graph: true, part: 'forward', iters: 30, warmup: 5 },
      { name: 'resnet18 train 32² b32, CUDA graph (both): + backward, no optimizer step', kind: 'train', batch: 32, size: 32, graph: true, part: 'backward', iters: 30, warmup: 5 },
      { name: 'resnet18 infer 224² b1 fp32, CUDA graph (both)', kind: 'infer', batch: 1, size: 224, graph: true, iters: 200, warmup: 20 },
      { name: 'resnet18 infer 224² b32 fp32, CUDA graph (both)', kind: 'infer', batch: 32, size: 224, graph: true, iters: 30, warmup: 5 },
      { name: 'resnet18 infer 224² b1 fp32, Kiln graph vs torch.compile', kind: 'infer', batch: 1, size: 224, compile: true, iters: 200, warmup: 20 },
      { name: 'resnet18 infer 224² b256 fp32, Kiln graph vs torch.compile', kind: 'infer', batch: 256, size: 224, compile: true, iters: 10, warmup: 3 },
      // compiling a training step takes Python a minute or more: only on request (BENCH_COMPILE_TRAIN=1)
      ...(process.env.BENCH_COMPILE_TRAIN === '1'
        ? [{ name: 'resnet18 train step 32² b512, Kiln graph vs torch.compile', kind: 'train', batch: 512, size: 32, compile: true, iters: 20, warmup: 5 } as Case]
        : []),
    ]
  : [
      { name: 'resnet18 infer 64² b1', kind: 'infer', batch: 1, size: 64, iters: 20, warmup: 3 },
      { name: 'resnet18 infer 64² b32', kind: 'infer', batch: 32, size: 64, iters: 5, warmup: 2 },
      { name: 'resnet18 infer 64² b1, optimised (both)', kind: 'infer', batch: 1, size: 64, optimize: true, iters: 20, warmup: 3 },
      { name: 'resnet18 infer 64² b32, optimised (both)', kind: 'infer', batch: 32, size: 64, optimize: true, iters: 5, warmup: 2 },
      { name: 'mobilenet_v3_small infer 64² b1', model: 'mobilenet_v3_small', kind: 'infer', batch: 1, size: 64, iters: 30, warmup: 5 },
      { name: 'mobilenet_v3_small infer 64² b1, optimised (both)', model: 'mobilenet_v3_small', kind: 'infer', batch: 1, size: 64, optimize: true, iters: 30, warmup: 5 },
      { name: 'resnet18 train step 32² b64', kind: 'train', batch: 64, size: 32, iters: 5, warmup: 2 },
      { name: 'convnext_tiny infer 64² b1', model: 'convnext_tiny', kind: 'infer', batch: 1, size: 64, iters: 30, warmup: 10 },
      { name: 'convnext_tiny infer 64² b32', model: 'convnext_tiny', kind: 'infer', batch: 32, size: 64, iters: 10, warmup: 3 },
    ];

/** Waits for the GPU after a step, as the Python peer's torch.cuda.synchronize(). */
function sync(): void {
  if (GPU) kiln.cuda.synchronize();
}

function kilnCase(c: Case): number {
  kiln.manualSeed(0);
  const m = kiln.models.create(c.model ?? 'resnet18', { numClasses: 10 }).to(DEVICE);
  try {
    if (c.kind === 'infer') {
      m.eval();
      if (c.bf16) m.to('bfloat16');
      const x = kiln.randn([c.batch, 3, c.size, c.size], { device: DEVICE, dtype: c.bf16 ? 'bfloat16' : 'float32' });
      if ((c.graph || c.compile) && kiln.nn.cudaGraphsAvailable()) {
        const g = kiln.nn.CudaGraph.capture(m, x);
        const t = medianSeconds(() => kiln.tidy(() => { g.call(x); sync(); }), c.iters, c.warmup);
        g.dispose();
        x.dispose();
        return t;
      }
      if (c.graph || c.compile) return NaN; // this build cannot capture CUDA graphs
      if (c.optimize) {
        const f = kiln.jit.optimizeForInference(m, x);
        const t = medianSeconds(() => kiln.tidy(() => { f.forward(x); sync(); }), c.iters, c.warmup);
        f.dispose();
        x.dispose();
        return t;
      }
      if (c.native) {
        const prog = m.program();
        if (prog < 0) throw new Error('the model has no native program');
        const t = medianSeconds(() => { N.free(N.runSync(prog, x.id, false)); sync(); }, c.iters, c.warmup);
        x.dispose();
        return t;
      }
      if (c.enqueue) {
        const ts: number[] = [];
        for (let i = 0; i < c.warmup + c.iters; i++) {
          sync();
          let t = 0;
          kiln.tidy(() => {
            const s = process.hrtime.bigint();
            kiln.noGrad(() => m.call(x));
            t = Number(process.hrtime.bigint() - s) / 1e9;
          });
          sync();
          if (i >= c.warmup) ts.push(t);
        }
        x.dispose();
        return ts.sort((a, b) => a - b)[Math.floor(ts.length / 2)];
      }
      const t = medianSeconds(() => kiln.tidy(() => { kiln.noGrad(() => m.call(x)); sync(); }), c.iters, c.warmup);
      x.dispose();
      return t;
    }
    m.train();
    const graph = c.graph || c.compile; // Kiln's answer to torch.compile is the recorded step
    if (graph && !kiln.nn.cudaGraphsAvailable()) return NaN;
    // recorded: the optimizer reads its lr on the device (capturable), so schedules still apply
    const opt = c.optimizer
      ? new kiln.optim.AdamW(m.parameters(), { lr: 1e-3, fused: c.optimizer === 'adamw-fused', capturable: !!graph })
      : new kiln.optim.SGD(m.parameters(), { lr: 0.01, momentum: 0.9, nesterov: true, capturable: !!graph });
    const x = kiln.randn([c.batch, 3, c.size, c.size], { device: DEVICE });
    const y = kiln.randint(0, 10, [c.batch], { device: DEVICE });
    const step = () => {
      opt.zeroGrad();
      const loss = kiln.nn.functional.crossEntropy(m.call(x), y);
      if (c.part !== 'forward') loss.backward();
      if (!c.part) opt.step();
      return loss;
    };
    let t: number;
    if (graph) {
      for (let i = 0; i < 3; i++) kiln.tidy(() => { step(); sync(); }); // warm-up: cuDNN, optimizer state
      const g = kiln.nn.CudaGraph.record(DEVICE, step);
      t = medianSeconds(() => { g.replay(); sync(); }, c.iters, c.warmup);
      g.dispose();
    } else t = medianSeconds(() => kiln.tidy(() => { step(); sync(); }), c.iters, c.warmup);
    x.dispose(); y.dispose(); opt.dispose();
    return t;
  } finally {
    m.dispose();
  }
}

export function run(): void {
  const threads = kiln.info().numThreads;
  // Python runs before and after Kiln (machine drift shows up in both), Kiln twice in between.
  const py = pythonWithTorch();
  const runPy = () => (py ? runPeer(py, [path.join(ROOT, 'bench', 'peers', 'models.py'), DEVICE, JSON.stringify(CASES), String(threads)]) : null);
  const before = runPy();
  // one failing case (a capture that fails, say) is reported in its row and does not lose the others
  const errors = new Map<number, string>();
  const kilnTimes = CASES.map((c, i) => {
    try {
      return Math.min(kilnCase(c), kilnCase(c));
    } catch (e) {
      errors.set(i, String((e as Error).message ?? e).split('\n')[0].slice(0, 120));
      return NaN;
    }
  });
  const after = runPy();
  const rows = CASES.map((c, i) => {
    const times = [before, after].map((r) => r?.find((x) => x.name === c.name)?.seconds as number | undefined).filter((t): t is number => t !== undefined);
    const p = times.length ? Math.min(...times) : undefined;
    const ips = (t: number) => (c.batch / t).toFixed(1);
    if (Number.isNaN(kilnTimes[i])) return [c.name, errors.has(i) ? `failed: ${errors.get(i)}` : 'no CUDA graphs', p ? (p * 1000).toFixed(2) : 'n/a', 'n/a', p ? ips(p) : 'n/a', 'n/a'];
    return [c.name, (kilnTimes[i] * 1000).toFixed(2), p ? (p * 1000).toFixed(2) : 'n/a', ips(kilnTimes[i]), p ? ips(p) : 'n/a', p ? (kilnTimes[i] / p).toFixed(3) : 'n/a'];
  });
  const t = table(['case', 'Kiln ms', 'PyTorch ms', 'Kiln img/s', 'PyTorch img/s', 'time ratio Kiln/PyTorch'], rows);
  console.log(t);
  record(`Models on ${DEVICE}`, `${new Date().toISOString().slice(0, 10)} — ${machine()}; device ${DEVICE}; ${threads} intra-op threads for both; median step time, best of two runs each (Python before and after Kiln); Python eager (no torch.compile).\n\n${t}`);
}

if (require.main === module) run();
