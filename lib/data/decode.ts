/**
 * Decoding one image file with sharp into interleaved uint8 pixels [H, W, C]: alpha removed,
 * palette and 16-bit images converted to 8-bit, grayscale ↔ RGB as asked, optional resize.
 * sharp does the work on libuv's thread pool, off the main thread.
 */
import sharp from 'sharp';
import { KilnError, invalidParameterError } from '../errors';

/** How an image is fitted into `size` (sharp's fit modes; 'contain' letterboxes in black). */
export type Fit = 'cover' | 'contain' | 'fill';

/** What decoding needs to know. */
export interface DecodeOptions {
  /** output [height, width]; absent: the image's own size */
  size?: [number, number];
  fit?: Fit;
  channels: 1 | 3;
}

/** Decoded pixels, interleaved HWC uint8. */
export interface Decoded {
  data: Buffer;
  height: number;
  width: number;
  channels: 1 | 3;
}

/** The file extensions image folders accept (matched case-insensitively). */
export const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg', '.webp', '.gif', '.tif', '.tiff', '.avif'];

/** Validates `size` ([h, w] positive integers, or one number for a square). */
export function checkSize(size: unknown, name = 'size'): [number, number] {
  const s = typeof size === 'number' ? [size, size] : size;
  if (!Array.isArray(s) || s.length !== 2 || !s.every((v) => typeof v === 'number' && Number.isInteger(v) && v > 0))
    throw invalidParameterError(name, 'a positive integer or [height, width]', size);
  return [s[0], s[1]];
}

/** Decodes one file (or encoded bytes); throws KilnError 'IO' naming `file` when it cannot. */
export async function decodeImage(input: string | Buffer, o: DecodeOptions, file = typeof input === 'string' ? input : '<buffer>'): Promise<Decoded> {
  try {
    // failOn 'truncated' rejects truncated files instead of returning grey rows; sequential
    // reads are faster for one-pass decoding.
    let img = sharp(input, { failOn: 'truncated', sequentialRead: true, limitInputPixels: 1 << 28 });
    if (o.size) img = img.resize(o.size[1], o.size[0], { fit: o.fit ?? 'cover', background: { r: 0, g: 0, b: 0, alpha: 1 } });
    img = img.removeAlpha();
    img = o.channels === 1 ? img.toColourspace('b-w') : img.toColourspace('srgb');
    const { data, info } = await img.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    if (info.channels !== o.channels) throw new Error(`decoded to ${info.channels} channels, expected ${o.channels}`);
    if (data.length !== info.width * info.height * o.channels) throw new Error(`decoded ${data.length} bytes for ${info.width}×${info.height}×${o.channels}`);
    return { data, height: info.height, width: info.width, channels: o.channels };
  } catch (e) {
    if (e instanceof KilnError) throw e;
    throw new KilnError(`${file}: cannot decode image (${(e as Error).message.split('\n')[0]})`, 'IO');
  }
}
