/** URL paths of the inference and management APIs → what they address. */
import { safeDecode } from './http';

/** What a path addresses; `name`/`version` are decoded, `label` is the route for metrics. */
export interface Route {
  kind: 'predict' | 'explain' | 'list' | 'describe' | 'set-default' | 'health' | 'ready' | 'metrics' | 'unknown';
  name?: string;
  version?: string;
  label: string;
}

const VERBS = { ':predict': 'predict', ':explain': 'explain' } as const;

/**
 * Parses a path: /predictions[/<name>[/<version>]], /v1/models/<name>[/versions/<version>]:predict, /explanations[/<name>[/<version>]],
 * /v1/models/<name>[/versions/<version>]:explain, /models,
 * /v1/models, /models/<name>[/<version>], /v1/models/<name>[/versions/<version>], /models/<name>/<version>/set-default,
 * /health, /ready, /metrics.
 */
export function parseRoute(pathname: string): Route {
  const seg = pathname.split('/').slice(1).map(safeDecode);
  const n = seg.length;
  const [a, b, c, d, e] = seg;
  if (seg.slice(1).includes('')) return { kind: 'unknown', label: 'other' }; // empty segments: '/models/', '//x'
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
