/**
 * `kiln.cuda`: the CUDA devices (PyTorch's `torch.cuda`): availability, the devices as the driver
 * describes them, waiting for queued GPU work (for timing, or before reading a clock), the memory
 * Kiln's tensors hold there and the caching allocator's statistics, and whether CUDA graphs are built in.
 */
import { N } from './native';
import { invalidParameterError } from './errors';
import { info, CudaDeviceInfo } from './info';
import { memory } from './tensor/memory';
import { cudaGraphsAvailable } from './nn/graph';

/** Whether libtorch can use a GPU here (a CUDA build and a visible device). */
export function isAvailable(): boolean {
  return info().cudaAvailable;
}

/** CUDA devices libtorch sees. */
export function deviceCount(): number {
  return info().deviceCount;
}

/** The CUDA devices as the driver describes them (name, compute capability, memory, SMs). */
export function devices(): CudaDeviceInfo[] {
  return info().devices;
}

/** Whether this build can capture CUDA graphs (`kiln.nn.CudaGraph`). */
export function graphsAvailable(): boolean {
  return cudaGraphsAvailable();
}

function checkDevice(device: unknown, who = 'cuda.synchronize'): string | undefined {
  if (device !== undefined && (typeof device !== 'string' || !device)) throw invalidParameterError(`${who}: device`, "a CUDA device such as 'cuda' or 'cuda:1'", device);
  return device as string | undefined;
}

/**
 * Blocks until `device` (default: the current one) has finished all work queued on it, as
 * `torch.cuda.synchronize` — CUDA ops return before the GPU is done, so time GPU code between
 * synchronizations. Throws CUDA_UNAVAILABLE without CUDA.
 */
export function synchronize(device?: string): void {
  N.cudaSynchronize(checkDevice(device));
}

/** `synchronize` on a native worker thread: the event loop keeps running while the GPU finishes. */
export async function synchronizeAsync(device?: string): Promise<void> {
  return N.cudaSynchronizeAsync(checkDevice(device));
}

/** Bytes of CUDA memory held by live Kiln tensors (each storage counted once; the caching allocator's reserve not included). */
export function memoryAllocated(): number {
  return memory().cudaBytes;
}

/** The caching allocator's numbers for one device (`torch.cuda.memory_stats`' aggregate entries). */
export interface CudaMemoryStats {
  /** bytes in blocks handed to tensors now (`torch.cuda.memory_allocated`) */
  allocatedBytes: number;
  /** the most allocated since the start or `resetPeakMemoryStats` (`max_memory_allocated`) */
  peakAllocatedBytes: number;
  /** bytes the allocator holds from the driver, in use or cached (`memory_reserved`) */
  reservedBytes: number;
  peakReservedBytes: number;
  /** out-of-memory errors the allocator has raised */
  numOoms: number;
}

/**
 * The CUDA caching allocator's statistics for `device` (default: the current one). Needs a build with the
 * CUDA headers (a CUDA libtorch, as for CUDA graphs); throws CUDA_UNAVAILABLE otherwise.
 */
export function memoryStats(device?: string): CudaMemoryStats {
  const [allocatedBytes, peakAllocatedBytes, reservedBytes, peakReservedBytes, numOoms] = N.cudaMemoryStats(checkDevice(device, 'cuda.memoryStats'));
  return { allocatedBytes, peakAllocatedBytes, reservedBytes, peakReservedBytes, numOoms };
}

/** Starts the peaks of `memoryStats` again from the current values (`torch.cuda.reset_peak_memory_stats`). */
export function resetPeakMemoryStats(device?: string): void {
  N.cudaResetPeakStats(checkDevice(device, 'cuda.resetPeakMemoryStats'));
}

/** Returns the allocator's cached, unused blocks to the driver (`torch.cuda.empty_cache`; other processes see the memory free). */
export function emptyCache(): void {
  N.cudaEmptyCache();
}
