/**
 * `shapes()`: a synthetic image-folder data set — circles, squares, triangles, … drawn as SVG
 * and rendered with sharp, at a random size, position, rotation and colour on a random
 * background with pixel noise, all from a seed. For tests and demos when no data set is installed.
 */
import { promises as fsp } from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import { KilnError, invalidParameterError } from '../errors';
import { imageFolder, ImageFolder, ImageFolderOptions } from './image-folder';
import { checkSeed, rng } from './rng';

/** The shapes `shapes()` can draw, in class order. */
export const SHAPE_CLASSES = ['circle', 'square', 'triangle', 'cross', 'star', 'hexagon', 'diamond', 'ring'];

/** Options of `shapes`. */
export interface ShapesOptions {
  /** number of images (default 600), spread evenly over the classes */
  n?: number;
  /** image side in pixels (default 32) */
  size?: number;
  seed?: number;
  /** how many classes (2 … 8, default 3) or their names from SHAPE_CLASSES */
  classes?: number | string[];
  /** standard deviation of the Gaussian pixel noise, 0..255 (default 12) */
  noise?: number;
  /** folder to write (default: a folder in the OS temp dir named by the options) */
  root?: string;
  /** options for the returned imageFolder (size defaults to the image size) */
  folder?: ImageFolderOptions;
}

function polygon(cx: number, cy: number, r: number, k: number, rot: number, inner = 0): string {
  const pts: string[] = [];
  const n = inner > 0 ? 2 * k : k;
  for (let i = 0; i < n; i++) {
    const a = rot + (i * 2 * Math.PI) / n;
    const rr = inner > 0 && i % 2 === 1 ? r * inner : r;
    pts.push(`${(cx + rr * Math.sin(a)).toFixed(2)},${(cy - rr * Math.cos(a)).toFixed(2)}`);
  }
  return `<polygon points="${pts.join(' ')}"`;
}

function shapeSvg(kind: string, s: number, r: () => number): string {
  const rad = s * (0.18 + 0.22 * r());
  const cx = rad + r() * (s - 2 * rad), cy = rad + r() * (s - 2 * rad);
  const rot = r() * 2 * Math.PI;
  const col = () => Math.floor(r() * 256);
  const fg = `rgb(${col()},${col()},${col()})`;
  const bgv = [col(), col(), col()];
  let el: string;
  switch (kind) {
    case 'circle': el = `<circle cx="${cx}" cy="${cy}" r="${rad}"`; break;
    case 'square': el = polygon(cx, cy, rad * 1.2, 4, rot); break;
    case 'triangle': el = polygon(cx, cy, rad * 1.2, 3, rot); break;
    case 'hexagon': el = polygon(cx, cy, rad * 1.1, 6, rot); break;
    case 'star': el = polygon(cx, cy, rad * 1.3, 5, rot, 0.45); break;
    case 'diamond': el = `<polygon points="${cx},${cy - rad * 1.3} ${cx + rad * 0.7},${cy} ${cx},${cy + rad * 1.3} ${cx - rad * 0.7},${cy}" transform="rotate(${((rot * 180) / Math.PI / 4).toFixed(1)} ${cx} ${cy})"`; break;
    case 'cross': {
      const a = rad, b = rad * 0.35;
      el = `<path d="M${cx - b},${cy - a}h${2 * b}v${a - b}h${a - b}v${2 * b}h${b - a}v${a - b}h${-2 * b}v${b - a}h${b - a}v${-2 * b}h${a - b}z" transform="rotate(${((rot * 180) / Math.PI).toFixed(1)} ${cx} ${cy})"`;
      break;
    }
    case 'ring': return svg(s, bgv, `<circle cx="${cx}" cy="${cy}" r="${rad * 0.8}" fill="none" stroke="${fg}" stroke-width="${Math.max(1.5, rad * 0.35)}"/>`);
    default: throw new KilnError(`shapes: unknown shape '${kind}'`, 'INVALID_ARGUMENT');
  }
  return svg(s, bgv, `${el} fill="${fg}"/>`);
}

function svg(s: number, bg: number[], body: string): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${s}" height="${s}"><rect width="100%" height="100%" fill="rgb(${bg.join(',')})"/>${body}</svg>`;
}

/** Writes (once; an existing complete folder is reused) and opens the synthetic shapes data set. */
export async function shapes(options: ShapesOptions = {}): Promise<ImageFolder> {
  if (options === null || typeof options !== 'object') throw invalidParameterError('options', 'an object', options);
  const n = options.n ?? 600;
  if (!Number.isInteger(n) || n < 1) throw invalidParameterError('n', 'a positive integer', n);
  const size = options.size ?? 32;
  if (!Number.isInteger(size) || size < 8 || size > 1024) throw invalidParameterError('size', 'an integer in [8, 1024]', size);
  const seed = checkSeed(options.seed ?? 0);
  const noise = options.noise ?? 12;
  if (typeof noise !== 'number' || !(noise >= 0 && noise <= 255)) throw invalidParameterError('noise', 'a number in [0, 255]', noise);
  const cls = options.classes ?? 3;
  let names: string[];
  if (typeof cls === 'number') {
    if (!Number.isInteger(cls) || cls < 2 || cls > SHAPE_CLASSES.length) throw invalidParameterError('classes', `an integer in [2, ${SHAPE_CLASSES.length}] or shape names`, cls);
    names = SHAPE_CLASSES.slice(0, cls);
  } else if (Array.isArray(cls) && cls.length >= 2 && cls.every((c) => SHAPE_CLASSES.includes(c)) && new Set(cls).size === cls.length) names = cls.slice();
  else throw invalidParameterError('classes', `an integer in [2, ${SHAPE_CLASSES.length}] or distinct names from ${SHAPE_CLASSES.join(', ')}`, cls);
  const root = options.root ?? path.join(os.tmpdir(), `kiln-shapes-${names.join('-')}-n${n}-s${size}-seed${seed}-noise${noise}`);
  if (typeof root !== 'string' || root.length === 0) throw invalidParameterError('root', 'a folder path', root);
  const marker = path.join(root, '.complete');
  const done = await fsp.readFile(marker, 'utf8').catch(() => null);
  if (done !== String(n)) {
    for (const c of names) await fsp.mkdir(path.join(root, c), { recursive: true });
    const r = rng(seed);
    // Draw every image's parameters first (sequentially, from the seed), then render in parallel.
    const jobs = Array.from({ length: n }, (_, i) => {
      const kind = names[i % names.length];
      return { file: path.join(root, kind, `${String(i).padStart(6, '0')}.png`), svg: shapeSvg(kind, size, r), noiseSeed: Math.floor(r() * 2 ** 32) };
    });
    let next = 0;
    const worker = async () => {
      while (next < jobs.length) {
        const j = jobs[next++];
        const { data } = await sharp(Buffer.from(j.svg)).removeAlpha().raw().toBuffer({ resolveWithObject: true });
        if (noise > 0) {
          const nr = rng(j.noiseSeed);
          for (let k = 0; k < data.length; k++) {
            // Irwin–Hall approximation of a normal variate: sum of 4 uniforms.
            const g = (nr() + nr() + nr() + nr() - 2) * Math.sqrt(3) * noise;
            data[k] = Math.max(0, Math.min(255, Math.round(data[k] + g)));
          }
        }
        await sharp(data, { raw: { width: size, height: size, channels: 3 } }).png().toFile(j.file);
      }
    };
    await Promise.all(Array.from({ length: Math.min(8, n) }, worker));
    await fsp.writeFile(marker, String(n));
  }
  return imageFolder(root, { size: [size, size], ...options.folder });
}
