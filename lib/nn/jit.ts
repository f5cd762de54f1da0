/** `kiln.jit`: TorchScript models saved by Python's `torch.jit.save`, for inference and input gradients. */
import * as fs from 'fs';
import { N } from '../native';
import { KilnError, invalidParameterError } from '../errors';
import { Tensor, idOf } from '../tensor/tensor';
import { Device, DType, checkDevice, dtypeCode } from '../tensor/dtype';
import { isGradEnabled } from '../autograd';
import { countWeightMove } from './module';
import { NativeRunnable } from './runnable';

/** A loaded TorchScript module (held natively). */
export class ScriptModule extends NativeRunnable {
  /** @internal */
  constructor(handle: number) {
    super(handle, 'this TorchScript module');
  }
  /** @internal The native runnable's handle (CUDA graph capture). */
  runnableHandle(): number {
    return this.h;
  }
  /** Forward on the calling thread; records autograd (gradients w.r.t. the input) unless under noGrad. */
  forward(x: Tensor): Tensor {
    return new Tensor(N.runSync(this.h, idOf(x, 'input'), isGradEnabled()));
  }
  /** `forward` (for symmetry with nn.Module). */
  call(x: Tensor): Tensor {
    return this.forward(x);
  }
  /** No-grad forward on a native worker thread. */
  async forwardAsync(x: Tensor): Promise<Tensor> {
    return new Tensor(await N.runAsync(this.h, idOf(x, 'input')));
  }
  /** Training mode on/off (dropout, batch norm). Returns this. */
  train(on = true): this {
    N.jitTrain(this.h, !!on);
    return this;
  }
  eval(): this {
    return this.train(false);
  }
  /** Moves (and optionally casts) the module's parameters and buffers. */
  to(device: Device, dtype?: DType): this {
    N.jitTo(this.h, checkDevice(device), dtype === undefined ? -1 : dtypeCode(dtype));
    countWeightMove();
    return this;
  }
  /** Parameters and buffers by name (new handles to the module's own tensors: dispose them when done). */
  stateDict(): Map<string, Tensor> {
    return new Map(N.jitState(this.h).map(([n, id]) => [n, new Tensor(id)]));
  }
}

/** Loads a TorchScript file (`torch.jit.save` in Python), optionally straight onto `device`. */
export function load(path: string, options: { device?: Device } = {}): ScriptModule {
  if (typeof path !== 'string' || !path) throw invalidParameterError('path', 'a file path', path);
  if (!fs.existsSync(path)) throw new KilnError(`cannot load TorchScript file ${path}: no such file`, 'IO');
  const device = options.device === undefined ? undefined : checkDevice(options.device);
  return new ScriptModule(N.jitLoad(path, device));
}
