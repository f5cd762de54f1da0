/**
 * The management API (TorchServe-style), served on its own port — off unless `managementPort` is given, and on
 * 127.0.0.1 unless `managementHost` says otherwise, because it loads models from paths:
 *   POST   /models?url=<dir>[&model_name=][&version=][&batch_size=][&max_batch_delay=][&max_queue=][&timeout_ms=][&top=]
 *          [&device=cpu|cuda][&precision=fp32|bf16|fp16][&channels_last=true][&optimize=true][&cuda_graphs=true|false]
 *          [&set_default=true]
 *          registers a model folder written by `kiln train` / `saveModel` (relative to `modelStore` when set); the
 *          options not given are the server's
 *   DELETE /models/<name>[/<version>]      unregisters: stops routing, drains in-flight requests, disposes the model
 *   PUT    /models/<name>/<version>/set-default
 *   GET    /models, /models/<name>[/<version>]   as on the inference port
 * Every mistake is a 4xx JSON {"error", "code"} naming it: 400 missing or bad parameter / missing or broken model
 * folder, 403 outside the model store, 404 unknown model or version, 405 wrong method, 409 name and version taken.
 */
import * as path from 'path';
import type { Server, Dispatch } from './server';
import { KilnError } from '../errors';
import { HttpError } from './inputs';
import { NAME_PATTERN, loadModelDirAsync } from './endpoint';
import { allowOnly, json, toHttpError } from './http';

/** Query parameters of POST /models → the option they set and how they parse. */
const PARAMS = {
  url: null,
  model_name: null,
  version: null,
  batch_size: { option: 'maxBatchSize', kind: 'int', min: 1 },
  max_batch_delay: { option: 'maxDelayMs', kind: 'number', min: 0 },
  max_queue: { option: 'maxQueue', kind: 'int', min: 1 },
  timeout_ms: { option: 'timeoutMs', kind: 'number', min: 0 },
  top: { option: 'top', kind: 'int', min: 1 },  // above the model's classes the endpoint answers them all
  device: { option: 'device', kind: ['cpu', 'cuda'], min: 0 },
  precision: { option: 'precision', kind: ['fp32', 'bf16', 'fp16'], min: 0 },
  channels_last: { option: 'channelsLast', kind: 'bool', min: 0 },
  optimize: { option: 'optimize', kind: 'bool', min: 0 },
  cuda_graphs: { option: 'cudaGraphs', kind: 'bool', min: 0 },
  set_default: { option: 'default', kind: 'bool', min: 0 },
} as const;

/** One query parameter's value, parsed; 400 naming it when malformed. */
function parseParam(key: string, raw: string, kind: 'int' | 'number' | 'bool' | readonly string[], min: number): number | boolean | string {
  if (typeof kind !== 'string') {
    if (!kind.includes(raw)) throw new HttpError(400, `query parameter ${key} must be one of ${kind.join(', ')}, got '${raw.slice(0, 64)}'`, 'BAD_PARAMETER');
    return raw;
  }
  if (kind === 'bool') {
    if (raw !== 'true' && raw !== 'false') throw new HttpError(400, `query parameter ${key} must be true or false, got '${raw}'`, 'BAD_PARAMETER');
    return raw === 'true';
  }
  const v = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(v) || (kind === 'int' && !Number.isInteger(v)) || v < min)
    throw new HttpError(400, `query parameter ${key} must be ${kind === 'int' ? 'an integer' : 'a number'} ≥ ${min}, got '${raw}'`, 'BAD_PARAMETER');
  return v;
}

/** A name or version from the query; 400 naming the parameter when it cannot appear in routes. */
function routeName(key: string, v: string): string {
  if (!NAME_PATTERN.test(v)) throw new HttpError(400, `query parameter ${key} must be up to 128 letters, digits, '.', '_' or '-', got '${v.length > 64 ? `${v.slice(0, 64)}…` : v}'`, 'BAD_PARAMETER');
  return v;
}

/** POST /models: loads the folder named by `url` and registers it. */
async function registerFromQuery(server: Server, q: URLSearchParams, modelStore: string | undefined): Promise<unknown> {
  for (const key of q.keys())
    if (!(key in PARAMS)) throw new HttpError(400, `unknown query parameter '${key}' (known: ${Object.keys(PARAMS).join(', ')})`, 'UNKNOWN_PARAMETER');
  const url = q.get('url');
  if (!url) throw new HttpError(400, "query parameter 'url' is required: the folder of a model saved by Kiln (kiln train --out DIR)", 'MISSING_PARAMETER');
  const where = path.resolve(modelStore ?? '.', url); // as loadModelDirAsync resolves it
  const folder = path.basename(url.endsWith('.safetensors') ? path.dirname(where) : where);
  const given = q.get('model_name');
  if (given === null && !NAME_PATTERN.test(folder)) throw new HttpError(400, `the folder name '${folder}' cannot be a model name: give model_name`, 'BAD_PARAMETER');
  const name = routeName('model_name', given ?? folder);
  const version = routeName('version', q.get('version') ?? '1');
  const options: Record<string, number | boolean | string> = { version };
  for (const [key, spec] of Object.entries(PARAMS)) {
    const raw = q.get(key);
    if (spec && raw !== null) options[spec.option] = parseParam(key, raw, spec.kind, spec.min);
  }
  server.registry.checkFree(name, version); // before loading the weights
  const { model, metadata, file } = await loadModelDirAsync(url, modelStore, modelStore !== undefined);
  try {
    await server.register(name, model, { ...options, metadata, dispose: true });
  } catch (e) {
    if (e instanceof HttpError) throw e;
    if (e instanceof KilnError && e.code === ('CLOSED' as string)) throw toHttpError(e, 1);
    throw new HttpError(400, `cannot serve ${file} as '${name}': ${(e as Error).message.split('\n')[0]}`, 'BAD_MODEL');
  }
  return { status: `model '${name}' version '${version}' registered`, model: server.registry.describe(name) };
}

/** The management API's routes, for `server`'s management listener. */
export function managementRoutes(server: Server, modelStore?: string): Dispatch {
  return async (_req, res, ctx) => {
    const { route, method } = ctx;
    const p = ctx.url.pathname;
    ctx.label = `management ${route.label}`;
    switch (route.kind) {
      case 'list':
        allowOnly(method, p, 'GET', 'POST');
        return json(res, 200, method === 'GET' ? server.registry.answer(route) : await registerFromQuery(server, ctx.url.searchParams, modelStore));
      case 'describe': {
        allowOnly(method, p, 'GET', 'DELETE');
        if (method === 'GET') return json(res, 200, server.registry.answer(route));
        const gone = await server.unregister(route.name!, route.version);
        return json(res, 200, { status: `model '${route.name}' version${gone.length > 1 ? 's' : ''} ${gone.map((v) => `'${v}'`).join(', ')} unregistered` });
      }
      case 'set-default':
        allowOnly(method, p, 'PUT');
        server.setDefault(route.name!, route.version!);
        return json(res, 200, { status: `model '${route.name}' default version is now '${route.version}'`, model: server.registry.describe(route.name!) });
      default:
        throw new HttpError(404, `no management route ${method} ${p}: see POST /models?url=, DELETE /models/<name>[/<version>], PUT /models/<name>/<version>/set-default, GET /models`, 'NOT_FOUND');
    }
  };
}
