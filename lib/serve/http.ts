/** Small HTTP helpers shared by the inference and management listeners: JSON answers, method checks, error mapping. */
import * as http from 'http';
import * as https from 'https';
import * as tls from 'tls';
import type { AddressInfo } from 'net';
import { KilnError } from '../errors';
import { HttpError } from './inputs';

/** decodeURIComponent that keeps malformed escapes as they are (a bad path is a 404, not a 500). */
export function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** Answers `body` as JSON (nothing when the response is already sent or the socket is gone). */
export function json(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** Throws 405 (with Allow) unless `method` is one of `allowed`. */
export function allowOnly(method: string, path: string, ...allowed: string[]): void {
  if (!allowed.includes(method)) throw new HttpError(405, `${method} ${path} is not allowed: use ${allowed.join(' or ')}`, 'METHOD_NOT_ALLOWED', { allow: allowed.join(', ') });
}

/** Maps any failure to an HttpError (unexpected ones to 500, with the message). */
export function toHttpError(e: unknown, retryAfterSeconds: number): HttpError {
  if (e instanceof HttpError) return e;
  const k = e instanceof KilnError ? e : null;
  const msg = e instanceof Error ? e.message.split('\n')[0] : String(e);
  if (k?.code === ('OVERLOADED' as string)) return new HttpError(503, msg, 'OVERLOADED', { 'retry-after': String(retryAfterSeconds) });
  if (k?.code === ('TIMEOUT' as string)) return new HttpError(504, msg, 'TIMEOUT');
  if (k?.code === ('CLOSED' as string)) return new HttpError(503, 'the server is shutting down', 'SHUTTING_DOWN', { connection: 'close' });
  if (e instanceof TypeError && /Invalid URL/.test(msg)) return new HttpError(400, `malformed request URL`, 'BAD_REQUEST');
  return new HttpError(500, `internal error: ${msg}`, k?.code ?? 'INTERNAL');
}

/** A server's TLS certificate chain and private key (PEM), as `ServerOptions.tls` takes them. */
export interface TlsOptions {
  /** the certificate chain, PEM */
  cert: string | Buffer;
  /** its private key, PEM */
  key: string | Buffer;
}

/** Checks `tls` options: PEM text of a certificate and a key that belong together (a clear error otherwise). */
export function checkTls(o: unknown, what = 'tls'): TlsOptions {
  if (o === null || typeof o !== 'object') throw new KilnError(`${what}: expected { cert, key } (PEM text of the certificate chain and its private key), got ${o === null ? 'null' : typeof o}`, 'INVALID_ARGUMENT');
  const t = o as Record<string, unknown>;
  for (const k of ['cert', 'key'])
    if (!(typeof t[k] === 'string' || Buffer.isBuffer(t[k])) || (t[k] as string | Buffer).length === 0)
      throw new KilnError(`${what}.${k}: expected PEM text (a string or Buffer; read the file first)`, 'INVALID_ARGUMENT');
  try {
    tls.createSecureContext({ cert: t.cert as string, key: t.key as string });
  } catch (e) {
    throw new KilnError(`${what}: the certificate and key are not usable: ${(e as Error).message}`, 'INVALID_ARGUMENT');
  }
  return { cert: t.cert as string | Buffer, key: t.key as string | Buffer };
}

/** Creates a node:http server (node:https with `tls`) for `handle` that answers unparsable requests with a bare 400. */
export function createHttpServer(handle: (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void>, tlsOptions?: TlsOptions): http.Server {
  const listener = (req: http.IncomingMessage, res: http.ServerResponse) => void handle(req, res);
  const s: http.Server = tlsOptions ? https.createServer({ cert: tlsOptions.cert, key: tlsOptions.key }, listener) : http.createServer(listener);
  s.on('clientError', (_e, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    else socket.destroy();
  });
  return s;
}

/** Starts `server` listening on host:port; rejects with the listen error (EADDRINUSE, …). */
export function listenOn(server: http.Server, port: number, host: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** The http://host:port (https:// with TLS) URL a listening server answers on. */
export function urlOf(server: http.Server, what = 'the server'): string {
  const a = server.address() as AddressInfo | null;
  if (!a) throw new KilnError(`${what} is not listening (call listen() first)`, 'INVALID_ARGUMENT');
  const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
  return `${server instanceof tls.Server ? 'https' : 'http'}://${host}:${a.port}`;
}

/** Counts work in flight and resolves `idle()` waiters when the count drops to zero. */
export class InFlight {
  private n = 0;
  private waiters: (() => void)[] = [];
  /** How many are in flight. */
  get count(): number {
    return this.n;
  }
  /** One more in flight. */
  enter(): void {
    this.n++;
  }
  /** One fewer in flight. */
  leave(): void {
    if (--this.n === 0) for (const f of this.waiters.splice(0)) f();
  }
  /** Resolves once nothing is in flight. */
  idle(): Promise<void> {
    return this.n === 0 ? Promise.resolve() : new Promise((resolve) => this.waiters.push(resolve));
  }
}
