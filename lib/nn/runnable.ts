/** The owner of a native runnable (a TorchScript module, a CUDA graph): its handle, freed once, with a GC backstop. */
import { N } from '../native';
import { KilnError } from '../errors';

const registry = new FinalizationRegistry<number>((h) => N.freeRunnable(h));

/** Holds a native runnable handle; `dispose()` (or the GC) frees it. */
export abstract class NativeRunnable {
  private handle: number;

  /** @param what names the object in the error a disposed one gives ('this CUDA graph') */
  protected constructor(handle: number, private readonly what: string) {
    this.handle = handle;
    registry.register(this, handle, this);
  }

  /** The live handle (throws once disposed). */
  protected get h(): number {
    if (this.handle < 0) throw new KilnError(`${this.what} was disposed`, 'DISPOSED');
    return this.handle;
  }

  /** Frees the native object now (idempotent). */
  dispose(): void {
    if (this.handle < 0) return;
    N.freeRunnable(this.handle);
    registry.unregister(this);
    this.handle = -1;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
