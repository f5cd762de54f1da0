/**
 * Decoding image files into planar uint8 pixels [C, H, W]: alpha removed, palette and 16-bit
 * images converted to 8-bit, RGB or grey (ITU-R 601-2 luma, as PIL's convert('L')), EXIF
 * orientation applied, optional resize.
 *
 * PNG and JPEG files go to the native decoder (native/decode.cc: libspng / libjpeg-turbo, many
 * files per call on a pool of threads); every other format, and any file the native path
 * declines (CMYK JPEG, a decode error), is decoded by sharp on libuv's pool. Either way the
 * grey conversion and the resizing (PIL's antialiased bilinear filter, bit for bit) are native,
 * so a PNG/JPEG folder gives exactly what torchvision's PIL loader gives.
 */
import sharp from 'sharp';
import * as fs from 'fs';
import * as os from 'os';
import { KilnError, invalidParameterError } from '../errors';
import { N } from '../native';

/** How an image is fitted into `size` ('cover': scale and centre-crop, 'contain': letterbox in black, 'fill': stretch). */
export type Fit = 'cover' | 'contain' | 'fill';

/** Which decoder handles PNG and JPEG files: 'auto' (native when built in) or 'sharp' (always sharp). */
export type Decoder = 'auto' | 'sharp';

/** What decoding needs to know. */
export interface DecodeOptions {
  /** output [height, width]; absent: the image's own size */
  size?: [number, number];
  fit?: Fit;
  channels: 1 | 3;
  /** rotate/mirror as the EXIF Orientation tag says (default true; false: raw stored pixels, as PIL) */
  autoOrient?: boolean;
  /** default 'auto' */
  decoder?: Decoder;
  /** decoder threads (default: the usable cores); one pool serves every call, grown to the largest value asked */
  threads?: number;
  /**
   * decode JPEGs much larger than `size` at 1/2, 1/4 or 1/8 scale (libjpeg-turbo's DCT scaling,
   * keeping at least twice the output resolution), then resize: many times faster on photos, with
   * pixels that differ slightly from PIL's full decode (default false)
   */
  shrinkOnLoad?: boolean;
}

/** Decoded pixels, planar CHW uint8. */
export interface Decoded {
  data: Uint8Array;
  height: number;
  width: number;
  channels: 1 | 3;
}

/** The file extensions image folders accept (matched case-insensitively). */
export const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg', '.webp', '.gif', '.tif', '.tiff', '.avif'];

const FITS: Fit[] = ['cover', 'contain', 'fill'];
const usableCores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;

/** The largest output side a decode takes (a 16384² RGB float image is already 3 GiB). */
export const MAX_IMAGE_SIDE = 16384;

/** Validates `size` ([h, w] positive integers up to MAX_IMAGE_SIDE, or one number for a square). */
export function checkSize(size: unknown, name = 'size'): [number, number] {
  const s = typeof size === 'number' ? [size, size] : size;
  if (!Array.isArray(s) || s.length !== 2 || !s.every((v) => typeof v === 'number' && Number.isInteger(v) && v > 0 && v <= MAX_IMAGE_SIDE))
    throw invalidParameterError(name, `a positive integer up to ${MAX_IMAGE_SIDE} or [height, width]`, size);
  return [s[0], s[1]];
}

/** Validates the decoder options shared by imageFolder and decodeImages. */
export function checkDecoderOptions(o: { decoder?: unknown; autoOrient?: unknown; threads?: unknown; shrinkOnLoad?: unknown }): void {
  if (o.shrinkOnLoad !== undefined && typeof o.shrinkOnLoad !== 'boolean') throw invalidParameterError('shrinkOnLoad', 'a boolean', o.shrinkOnLoad);
  if (o.decoder !== undefined && o.decoder !== 'auto' && o.decoder !== 'sharp') throw invalidParameterError('decoder', "'auto' or 'sharp'", o.decoder);
  if (o.autoOrient !== undefined && typeof o.autoOrient !== 'boolean') throw invalidParameterError('autoOrient', 'a boolean', o.autoOrient);
  if (o.threads !== undefined && (!Number.isInteger(o.threads) || (o.threads as number) < 1 || (o.threads as number) > 1024)) throw invalidParameterError('threads', 'an integer in [1, 1024]', o.threads);
}

function ioError(file: string, e: unknown): KilnError {
  if (e instanceof KilnError) return e;
  return new KilnError(`${file}: cannot decode image (${(e as Error).message.split('\n')[0]})`, 'IO');
}

/** Interleaved pixels from sharp, before channel conversion and resizing. */
interface Raw {
  data: Uint8Array;
  height: number;
  width: number;
  channels: 3;
}

/** Decodes a file or encoded bytes with sharp to 8-bit sRGB (EXIF-oriented, alpha dropped). */
async function sharpPixels(input: string | Buffer, autoOrient: boolean, file: string): Promise<Raw> {
  try {
    // failOn 'truncated' rejects truncated files instead of returning grey rows; sequential
    // reads are faster for one-pass decoding.
    let img = sharp(input, { failOn: 'truncated', sequentialRead: true, limitInputPixels: 1 << 28 });
    if (autoOrient) img = img.autoOrient();
    const { data, info } = await img.removeAlpha().toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    if (info.channels !== 3 || data.length !== info.width * info.height * 3) throw new Error(`decoded ${data.length} bytes for ${info.width}×${info.height}×${info.channels}`);
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), height: info.height, width: info.width, channels: 3 };
  } catch (e) {
    throw ioError(file, e);
  }
}

/** Validates DecodeOptions (channels, size, fit and the decoder options). */
function checkDecodeOptions(o: DecodeOptions): void {
  if (o === null || typeof o !== 'object') throw invalidParameterError('options', 'an object with channels: 1 | 3', o);
  if (o.channels !== 1 && o.channels !== 3) throw invalidParameterError('channels', '1 or 3', o.channels);
  if (o.size !== undefined) checkSize(o.size);
  if (o.fit !== undefined && !FITS.includes(o.fit)) throw invalidParameterError('fit', "'cover', 'contain' or 'fill'", o.fit);
  checkDecoderOptions(o);
}

/** Runs the native decode/convert/fit job over paths, encoded PNG/JPEG bytes and sharp's pixels. */
async function nativeJob(inputs: (string | Raw | { encoded: Uint8Array })[], o: DecodeOptions): Promise<(Decoded | string)[]> {
  const fit = FITS.indexOf(o.fit ?? 'cover');
  const res = await N.decodeImagesAsync(inputs, o.size?.[0] ?? 0, o.size?.[1] ?? 0, fit, o.channels, o.autoOrient !== false, o.threads ?? usableCores, !!o.shrinkOnLoad);
  return res.map((r) => (typeof r === 'string' ? r : { data: new Uint8Array(r.data), height: r.height, width: r.width, channels: o.channels }));
}

/** Decodes one file or encoded bytes (PNG/JPEG natively, other formats with sharp); throws KilnError 'IO' naming the file when it cannot. */
export async function decodeImage(input: string | Buffer, o: DecodeOptions, file = typeof input === 'string' ? input : '<buffer>'): Promise<Decoded> {
  checkDecodeOptions(o);
  if (typeof input !== 'string' && !Buffer.isBuffer(input)) throw invalidParameterError('input', 'a file path or a Buffer of encoded image bytes', input);
  if (typeof input === 'string') {
    const [r] = await decodeImages([input], o);
    if (r instanceof KilnError) throw r;
    return r;
  }
  if ((o.decoder ?? 'auto') === 'auto' && nativeSignature(input) && nativeAvailable()) {
    // PNG/JPEG bytes decode natively in one job; anything it declines goes to sharp, as files do
    const [n] = await nativeJob([{ encoded: new Uint8Array(input.buffer, input.byteOffset, input.length) }], o);
    if (typeof n !== 'string') return n;
  }
  const [r] = await nativeJob([await sharpPixels(input, o.autoOrient !== false, file)], o);
  if (typeof r === 'string') throw new KilnError(`${file}: ${r}`, 'IO');
  return r;
}

/** Whether encoded bytes start as PNG or JPEG do (the formats the native path may decode; others go straight to sharp). */
function nativeSignature(b: Buffer): boolean {
  const png = b.length >= 8 && b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47;
  const jpeg = b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff;
  return png || jpeg;
}

let native: boolean | undefined;
/** True when this build decodes PNG/JPEG natively (fixed at build time: asked once). */
function nativeAvailable(): boolean {
  if (native === undefined) {
    const f = N.decodeFormats();
    native = f.png || f.jpeg;
  }
  return native;
}

/**
 * Decodes many files: PNG/JPEG natively in one call on the decoder threads; the rest (and
 * files the native path declines) decoded by sharp, at most `sharpConcurrency` at a time, then
 * converted and resized natively too, so every format gets the same grey conversion and
 * resampling. Each entry is the pixels or the KilnError 'IO' that names the unreadable file.
 */
export async function decodeImages(files: string[], o: DecodeOptions, sharpConcurrency = 16): Promise<(Decoded | KilnError)[]> {
  checkDecodeOptions(o);
  if (!Array.isArray(files) || !files.every((f) => typeof f === 'string' && f.length > 0)) throw invalidParameterError('files', 'an array of file paths', files);
  if (!Number.isInteger(sharpConcurrency) || sharpConcurrency < 1) throw invalidParameterError('sharpConcurrency', 'a positive integer', sharpConcurrency);
  const out: (Decoded | KilnError | undefined)[] = new Array(files.length);
  let pending = files.map((_, i) => i);
  if ((o.decoder ?? 'auto') === 'auto' && files.length > 0 && nativeAvailable()) {
    const res = await nativeJob(files, o);
    pending = [];
    res.forEach((r, i) => {
      if (typeof r === 'string') pending.push(i);
      else out[i] = r;
    });
  }
  if (pending.length === 0) return out as Decoded[];
  // sharp decodes the rest, a bounded number in flight
  const raws: { i: number; raw: Raw }[] = [];
  let next = 0;
  const worker = async () => {
    while (next < pending.length) {
      const i = pending[next++];
      // sharp would block on a FIFO (its open waits for a writer) and read a device without end
      const st = await fs.promises.stat(files[i]).catch(() => null);
      if (st && !st.isFile()) {
        out[i] = new KilnError(`${files[i]}: cannot decode image (not a regular file)`, 'IO');
        continue;
      }
      try {
        raws.push({ i, raw: await sharpPixels(files[i], o.autoOrient !== false, files[i]) });
      } catch (e) {
        out[i] = ioError(files[i], e);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(sharpConcurrency, pending.length) }, worker));
  if (raws.length > 0) {
    const fitted = await nativeJob(raws.map((r) => r.raw), o);
    raws.forEach(({ i }, k) => {
      const r = fitted[k];
      out[i] = typeof r === 'string' ? new KilnError(`${files[i]}: cannot decode image (${r})`, 'IO') : r;
    });
  }
  return out as (Decoded | KilnError)[];
}
