/**
 * The `kiln` command: `train`, `evaluate`, `predict`, `robust`, `explain`, `serve`, `export`, `info`. User mistakes print one line
 * (`kiln: error: …`) and exit non-zero without a stack; `KILN_DEBUG=1` shows stacks.
 */
import * as path from 'path';
import { KilnError } from '../errors';
import { FlagSpec, UsageError, parseArgs, formatOptions } from './args';

const EXAMPLES = `Examples:
  kiln train --data fashion-mnist --out runs/fmnist                # the README's demo recipe (simple-cnn, 6 epochs)
  kiln train --data shapes --epochs 2 --limit 200 --json            # a quick synthetic run
  kiln train --data ./photos --model resnet18 --size 64 --augment basic --device cuda --out runs/photos
  kiln train --data fashion-mnist --out runs/fmnist --resume        # continue after Ctrl-C
  kiln evaluate --model runs/fmnist --json
  kiln predict --model runs/fmnist --top 3 shoe.png shirt.png
  kiln robust --model runs/fmnist --eps 1/255,2/255,4/255,8/255 --limit 1000    # accuracy under PGD and CIFAR-10-C corruptions
  kiln robust --model runs/fmnist --attack none --corruptions none --smoothing-sigma 0.25 --limit 100   # certified L2 accuracy of the smoothed model
  kiln train --data fashion-mnist --robust pgd --eps 0.1 --out runs/fmnist-robust # adversarial training
  kiln explain --model runs/fmnist --method gradcam --out heatmaps shoe.png
  kiln serve --model runs/fmnist --port 8080 --max-batch 32 --max-delay-ms 5   # then: curl --data-binary @shoe.png -H 'content-type: image/png' localhost:8080/predictions
  kiln serve --model runs/photos --device cuda --host 0.0.0.0 --max-batch 128 --timeout-ms 2000
  kiln serve --model fmnist=runs/fmnist --model digits=runs/mnist --model digits@2=runs/mnist2 --management-port 8081   # several models; management API on 127.0.0.1:8081
  kiln export --model runs/fmnist --out fmnist.pt                  # TorchScript for Python's torch.jit.load, TorchServe, C++
  kiln export --model runs/fmnist --format onnx --out fmnist.onnx  # ONNX for ONNX Runtime, TensorRT, browsers
  kiln info`;

const USAGE = `kiln — train, harden, explain and serve image classifiers on libtorch from Node.js

Usage: kiln <command> [options]

Commands:
  train      train a model (fashion-mnist, mnist, shapes, cifar10:DIR or an image folder); writes model, checkpoint, history, metrics, plots
  evaluate   accuracy, loss, per-class precision/recall/F1 and calibration of a trained model on a test set
  predict    class probabilities for image files
  robust     accuracy under adversarial attacks (PGD, FGSM) and common corruptions (CIFAR-10-C); certified accuracy (randomized smoothing)
  explain    heat maps of why a model predicts what it does (Grad-CAM, integrated gradients, SmoothGrad, saliency, occlusion)
  serve      an HTTP inference server with dynamic batching for one or several models (POST /predictions/<name>, /health, /ready, /metrics, /models)
  export     a trained model as a TorchScript file (Python's torch.jit.load, TorchServe, C++ libtorch) or an ONNX file (ONNX Runtime, TensorRT, browsers)
  info       versions, CUDA availability, threads

Run 'kiln <command> --help' for its options.

${EXAMPLES}`;

const INFO_FLAGS: Record<string, FlagSpec> = {
  json: { type: 'boolean', help: 'print JSON' },
  help: { type: 'boolean', alias: 'h', help: 'show this help' },
};

/** Help text of one command. */
async function commandHelp(cmd: string): Promise<string> {
  const spec = await flagsOf(cmd);
  const usage = cmd === 'predict' || cmd === 'explain' ? `kiln ${cmd} --model DIR [options] image…` : `kiln ${cmd} [options]`;
  const examples = EXAMPLES.split('\n').filter((l) => l.includes(`kiln ${cmd}`)).join('\n');
  return `Usage: ${usage}\n\nOptions:\n${formatOptions(spec)}\n${examples ? `\nExamples:\n${examples}\n` : ''}`;
}

async function flagsOf(cmd: string): Promise<Record<string, FlagSpec>> {
  if (cmd === 'train') return (await import('./train')).TRAIN_FLAGS;
  if (cmd === 'evaluate') return (await import('./inference')).EVALUATE_FLAGS;
  if (cmd === 'predict') return (await import('./inference')).PREDICT_FLAGS;
  if (cmd === 'serve') return (await import('./serve')).SERVE_FLAGS;
  if (cmd === 'robust') return (await import('./robust')).ROBUST_FLAGS;
  if (cmd === 'explain') return (await import('./explain')).EXPLAIN_FLAGS;
  if (cmd === 'export') return (await import('./export')).EXPORT_FLAGS;
  if (cmd === 'info') return INFO_FLAGS;
  throw new UsageError(`unknown command '${cmd}' (commands: train, evaluate, predict, robust, explain, serve, export, info; see kiln --help)`);
}

/** Runs the CLI with `argv` (without node and the script); resolves to the exit code. */
export async function run(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    if (cmd === 'help' && rest[0]) process.stdout.write((await commandHelp(rest[0])) + '\n');
    else process.stdout.write(USAGE + '\n');
    return cmd === undefined ? 2 : 0;
  }
  if (cmd === '--version' || cmd === '-v') {
    process.stdout.write(require(path.resolve(__dirname, '..', '..', '..', 'package.json')).version + '\n');
    return 0;
  }
  const spec = await flagsOf(cmd);
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write((await commandHelp(cmd)) + '\n');
    return 0;
  }
  const { flags, positional, lists, given } = parseArgs(rest, spec, cmd);
  if (cmd !== 'predict' && cmd !== 'explain' && positional.length) throw new UsageError(`unexpected argument '${positional[0]}' for 'kiln ${cmd}' (options start with --)`);
  const log = (s: string) => (flags.json ? process.stderr : process.stdout).write(s + '\n');
  if (cmd === 'info') {
    const { info, BLAS_HINT } = await import('../info');
    const i = info();
    const short = { kiln: i.kilnVersion, torch: i.torchVersion, cuda: i.cudaAvailable, cudaVersion: i.cudaVersion, cudnn: i.cudnnVersion, devices: i.deviceCount, gpus: i.devices, driver: i.driverVersion, threads: i.numThreads, blas: i.blas.name, nativeImageDecoding: i.nativeImageDecoding };
    if (flags.json) process.stdout.write(JSON.stringify(short) + '\n');
    else log(`kiln ${i.kilnVersion} · libtorch ${i.torchVersion} · CUDA ${i.cudaAvailable ? `${i.cudaVersion ?? 'yes'} (${i.deviceCount} device${i.deviceCount === 1 ? '' : 's'})` : 'not available'} · cuDNN ${i.cudnnVersion ?? 'no'} · ${i.numThreads} CPU threads · BLAS ${i.blas.name} · native decoding: ${Object.entries(i.nativeImageDecoding).filter(([, on]) => on).map(([f]) => f.toUpperCase()).join(', ') || 'none (sharp)'}`);
    if (!i.blas.optimized) log(`  the reference BLAS (${i.blas.path}) makes batch-1 convolutions ~9× slower: ${BLAS_HINT}`);
    for (const d of i.devices) log(`  cuda:${d.index} ${d.name} · compute capability ${d.capability} · ${(d.memoryBytes / 2 ** 30).toFixed(1)} GiB · ${d.multiprocessors} SMs · driver ${i.driverVersion}${i.cudaAvailable ? '' : ' (this libtorch has no CUDA)'}`);
    return 0;
  }
  if (flags.device === 'cuda') {
    const { info } = await import('../info');
    if (!info().cudaAvailable) throw new UsageError('--device cuda: CUDA is not available in this libtorch build or on this machine (kiln info)');
  }
  if (cmd === 'train') return (await import('./train')).train(flags, log);
  if (cmd === 'evaluate') return (await import('./inference')).evaluate(flags, log);
  if (cmd === 'serve') return (await import('./serve')).serveCommand(flags, log, lists, given);
  if (cmd === 'robust') return (await import('./robust')).robustCommand(flags, log);
  if (cmd === 'explain') return (await import('./explain')).explainCommand(flags, positional, log);
  if (cmd === 'export') return (await import('./export')).exportCommand(flags, log);
  return (await import('./inference')).predict(flags, positional, log);
}

/** Entry point of bin/kiln.js: runs and exits with the code; errors become one line. */
export function main(argv = process.argv.slice(2)): void {
  run(argv).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      const debug = !!process.env.KILN_DEBUG;
      if (e instanceof UsageError) {
        process.stderr.write(`kiln: error: ${e.message}\n`);
        process.exitCode = 2;
      } else if (e instanceof KilnError) {
        process.stderr.write(`kiln: error: ${e.message.split('\n')[0]}\n${debug ? e.stack + '\n' : ''}`);
        process.exitCode = 1;
      } else {
        const err = e as Error;
        process.stderr.write(`kiln: internal error: ${err?.message ?? String(e)}${debug ? `\n${err?.stack}` : ' (set KILN_DEBUG=1 for the stack)'}\n`);
        process.exitCode = 1;
      }
    },
  );
}

if (require.main === module) main();
