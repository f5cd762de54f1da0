/**
 * The access log: one entry per finished request on every listener (inference, management, gRPC), with the request
 * id the answer carries in `x-request-id` — the client's own when it sent a usable one, else one the server makes.
 * `kiln serve --access-log FILE` writes the entries as JSON lines (`-`: standard output).
 */
import * as fs from 'fs';
import { randomUUID } from 'crypto';
import { KilnError, invalidParameterError } from '../errors';

/** One finished request. */
export interface AccessLogEntry {
  /** when the request arrived (ISO 8601, UTC) */
  time: string;
  /** the request id (answered in the `x-request-id` header; gRPC: the `x-request-id` metadata, else ModelInfer's `id`) */
  id: string;
  /** the listener that answered it */
  listener: 'inference' | 'management' | 'grpc';
  /** the client's address (null when the socket had already gone) */
  remote: string | null;
  /** the HTTP method, or the gRPC method (ModelInfer, ServerLive, …) */
  method: string;
  /** the URL path without the query (gRPC: /inference.GRPCInferenceService/<method>) */
  path: string;
  /** the route as metrics label it (e.g. /predictions/:name) */
  route: string;
  /** the HTTP status, or the gRPC status name (OK, INVALID_ARGUMENT, …) */
  status: number | string;
  /** from arrival to the answer written, in milliseconds */
  ms: number;
  /** the model and version the request reached, when it reached one */
  model?: string;
  version?: string;
  /** the request body's declared size (content-length; null when chunked or absent) */
  bytesIn: number | null;
  /** the answer's size (content-length; null when streamed) */
  bytesOut: number | null;
  /** the error code of a failed request (as in its JSON answer, e.g. BAD_IMAGE) */
  error?: string;
}

/** Receives each entry; it must not throw (a logger that does is reported once and kept). */
export type AccessLogger = (entry: AccessLogEntry) => void;

/** A client's request id is kept when it is 1–128 characters of letters, digits and `-._:/+=`; else the server makes one. */
const ID = /^[A-Za-z0-9\-._:/+=]{1,128}$/;

/** The request id for a request that sent `given` (a header or metadata value). */
export function requestId(given: unknown): string {
  const v = Array.isArray(given) ? given[0] : given;
  return typeof v === 'string' && ID.test(v) ? v : randomUUID();
}

/** Checks the `accessLog` option and wraps it so that a throwing logger cannot fail a request. */
export function accessLogger(log: unknown): AccessLogger | null {
  if (log === undefined || log === null) return null;
  if (typeof log !== 'function') throw invalidParameterError('accessLog', 'a function (entry) => void', log);
  let warned = false;
  return (entry) => {
    try {
      (log as AccessLogger)(entry);
    } catch (e) {
      if (!warned) process.emitWarning(`kiln serve: the access logger threw (${(e as Error).message}); requests are answered regardless`, { code: 'KILN_ACCESS_LOG' });
      warned = true;
    }
  };
}

/** A size header as a number (null when absent or malformed). */
export function sizeOf(v: unknown): number | null {
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : NaN;
  return Number.isSafeInteger(n) ? n : null;
}

/** A logger writing JSON lines to `file` (appended) or standard output (`-`), with `close()` to flush and end it. */
export function jsonLinesLog(file: string): { log: AccessLogger; close(): Promise<void> } {
  if (file === '-') return { log: (e) => void process.stdout.write(JSON.stringify(e) + '\n'), close: async () => {} };
  let fd: number;
  try {
    fd = fs.openSync(file, 'a');
  } catch (e) {
    throw new KilnError(`access log ${file}: cannot open it for appending (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, 'IO');
  }
  const stream = fs.createWriteStream('', { fd });
  let failed = false;
  stream.on('error', (e) => {
    if (!failed) process.emitWarning(`kiln serve: writing the access log ${file} failed (${e.message}); entries are dropped`, { code: 'KILN_ACCESS_LOG' });
    failed = true;
  });
  return {
    log: (e) => { if (!failed) stream.write(JSON.stringify(e) + '\n'); },
    close: () => new Promise<void>((resolve) => stream.end(resolve)),
  };
}
