/**
 * Reading whole model and weight files: only regular files — a FIFO blocks its reader (and a libuv thread) until
 * someone writes, and a device such as /dev/zero never ends (its read filled memory at ~500 MB/s).
 */
import * as fs from 'fs';

function notRegular(st: fs.Stats): Error {
  const kind = st.isDirectory() ? 'a directory' : st.isFIFO() ? 'a FIFO' : st.isCharacterDevice() || st.isBlockDevice() ? 'a device' : st.isSocket() ? 'a socket' : 'not a file';
  return new Error(`it is ${kind}, not a regular file`);
}

/** The bytes of a regular file (throws the fs error, or one saying what else the path is). */
export function readRegularFile(file: string): Buffer {
  const st = fs.statSync(file);
  if (!st.isFile()) throw notRegular(st);
  return fs.readFileSync(file);
}

/** `readRegularFile` off the main thread. */
export async function readRegularFileAsync(file: string): Promise<Buffer> {
  const st = await fs.promises.stat(file);
  if (!st.isFile()) throw notRegular(st);
  return fs.promises.readFile(file);
}

/** Throws unless `file` is a regular file (for paths a native reader opens). */
export function checkRegularFile(file: string): void {
  const st = fs.statSync(file);
  if (!st.isFile()) throw notRegular(st);
}
