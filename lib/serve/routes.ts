/** URL paths of the inference and management APIs → what they address. */
import { safeDecode } from './http';

/** What a path addresses; `name`/`version` are decoded, `label` is the route for metrics. */
export interface Route {
  kind: 'predict' | 'explain' | 'list' | 'describe' | 'set-default' | 'health' | 'ready' | 'metrics' | 'unknown' | V2Kind;
  name?: string;
  version?: string;
  label: string;
  /** set on every path under /v2 (the Open Inference Protocol: its errors are `{"error": message}` only) */
  protocol?: 'v2';
}

/** The Open Inference Protocol's routes (v2.ts). */
export type V2Kind = 'v2-server' | 'v2-live' | 'v2-ready' | 'v2-model' | 'v2-model-ready' | 'v2-infer';

const VERBS = { ':predict': 'predict', ':explain': 'explain' } as const;

/**
 * Parses a path: /predictions[/<name>[/<version>]], /v1/models/<name>[/versions/<version>]:predict, /explanations[/<name>[/<version>]],
 * /v1/models/<name>[/versions/<version>]:explain, /models,
 * /v1/models, /models/<name>[/<version>], /v1/models/<name>[/versions/<version>], /models/<name>/<version>/set-default,
 * /health, /ready, /metrics, and the Open Inference Protocol's (see `parseV2Route`).
 */
export function parseRoute(pathname: string): Route {
  const seg = pathname.split('/').slice(1).map(safeDecode);
  const n = seg.length;
  const [a, b, c, d, e] = seg;
  if (seg.slice(1).includes('')) return { kind: 'unknown', label: 'other', ...(a === 'v2' ? { protocol: 'v2' as const } : {}) }; // empty segments: '/models/', '//x'
  if (a === 'v2') return parseV2Route(seg);
  if (n === 1 && (a === 'health' || a === 'ready' || a === 'metrics')) return { kind: a, label: `/${a}` };
  if (a === 'predictions' && n <= 3) return { kind: 'predict', name: b, version: c, label: '/predictions' };
  if (a === 'explanations' && n <= 3) return { kind: 'explain', name: b, version: c, label: '/explanations' };
  if (a === 'models' && n <= 3) return n === 1 ? { kind: 'list', label: '/models' } : { kind: 'describe', name: b, version: c, label: n === 2 ? '/models/:name' : '/models/:name/:version' };
  if (a === 'models' && n === 4 && d === 'set-default') return { kind: 'set-default', name: b, version: c, label: '/models/:name/:version/set-default' };
  if (a === 'v1' && b === 'models' && (n === 2 || n === 3 || (n === 5 && d === 'versions'))) {
    if (n === 2) return { kind: 'list', label: '/models' };
    const last = seg[n - 1];
    const version = n === 5 ? e : undefined;
    for (const [suffix, kind] of Object.entries(VERBS)) {
      if (!last.endsWith(suffix)) continue;
      const strip = (s: string) => s.slice(0, -suffix.length);
      return { kind, name: n === 3 ? strip(c) : c, version: version === undefined ? undefined : strip(version), label: `/v1/models/:name${suffix}` };
    }
    return { kind: 'describe', name: c, version, label: n === 3 ? '/models/:name' : '/models/:name/:version' };
  }
  return { kind: 'unknown', label: 'other' };
}

/**
 * The Open Inference Protocol (KServe v2) paths, split into segments: /v2, /v2/health/live, /v2/health/ready,
 * /v2/models/<name>[/versions/<version>], …/ready and …/infer.
 */
function parseV2Route(seg: string[]): Route {
  const n = seg.length;
  const unknown: Route = { kind: 'unknown', label: 'other', protocol: 'v2' };
  if (n === 1) return { kind: 'v2-server', label: '/v2', protocol: 'v2' };
  if (seg[1] === 'health' && n === 3 && (seg[2] === 'live' || seg[2] === 'ready')) return { kind: `v2-${seg[2]}`, label: `/v2/health/${seg[2]}`, protocol: 'v2' };
  if (seg[1] !== 'models' || n < 3) return unknown;
  const versioned = n >= 5 && seg[3] === 'versions';
  const rest = seg.slice(versioned ? 5 : 3);
  const at = { name: seg[2], version: versioned ? seg[4] : undefined, protocol: 'v2' as const };
  if (rest.length === 0) return { kind: 'v2-model', label: '/v2/models/:name', ...at };
  if (rest.length === 1 && rest[0] === 'ready') return { kind: 'v2-model-ready', label: '/v2/models/:name/ready', ...at };
  if (rest.length === 1 && rest[0] === 'infer') return { kind: 'v2-infer', label: '/v2/models/:name/infer', ...at };
  return unknown;
}
