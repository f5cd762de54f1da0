/**
 * `ModelRegistry`: the models a server routes to, by name and version. A name's default version is the one set
 * with `setDefault`, else the most recently registered version that is ready (else the most recent one).
 * Unregistered versions leave the routes at once and stay listed as `leaving` until they have drained.
 */
import { HttpError } from './inputs';
import type { ModelEndpoint } from './endpoint';
import type { Route } from './routes';

interface Versions {
  /** in registration order */
  versions: Map<string, ModelEndpoint>;
  explicitDefault?: string;
}

const quoted = (xs: Iterable<string>) => [...xs].map((x) => `'${x}'`).join(', ');

/** Served models by name and version (see the module comment for the default-version rule). */
export class ModelRegistry {
  private readonly models = new Map<string, Versions>();
  private readonly leaving = new Set<ModelEndpoint>();

  /** The served model names, in registration order. */
  names(): string[] {
    return [...this.models.keys()];
  }

  /** Every routable endpoint. */
  endpoints(): ModelEndpoint[] {
    return [...this.models.values()].flatMap((m) => [...m.versions.values()]);
  }

  /** Every endpoint, routable or draining. */
  all(): ModelEndpoint[] {
    return [...this.endpoints(), ...this.leaving];
  }

  /** Throws 409 when `name`/`version` is taken. */
  checkFree(name: string, version: string): void {
    if (this.models.get(name)?.versions.has(version))
      throw new HttpError(409, `model '${name}' version '${version}' is already registered: unregister it first or give another version`, 'MODEL_EXISTS');
  }

  /** Adds an endpoint (409 when its name and version are taken). */
  add(ep: ModelEndpoint): void {
    this.checkFree(ep.name, ep.version);
    const m = this.models.get(ep.name) ?? { versions: new Map() };
    m.versions.set(ep.version, ep);
    this.models.set(ep.name, m);
    ep.onStateChange = () => this.changed();
    this.changed();
  }

  private readonly listeners = new Set<() => void>();
  /** Calls `fn` after every change of what is served or how ready it is (models added, taken, loaded, draining, a new default version, the server's readiness); returns the unsubscribe function. */
  onChange(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Tells the listeners that something changed. */
  changed(): void {
    for (const fn of [...this.listeners]) fn();
  }

  /** The default version of `name` (404 when unknown). */
  defaultVersion(name: string): string {
    const m = this.get(name);
    if (m.explicitDefault !== undefined) return m.explicitDefault;
    const all = [...m.versions.values()];
    return (all.filter((e) => e.state === 'ready').pop() ?? all[all.length - 1]).version;
  }

  /**
   * The endpoint a request names. Without a name: the only model (400 when several are served, 404 when none);
   * without a version: the name's default. 404 for unknown names and versions.
   */
  resolve(name?: string, version?: string): ModelEndpoint {
    if (name === undefined) {
      if (this.models.size === 0) throw new HttpError(404, 'no model is registered on this server (register one with POST /models on the management API)', 'NO_MODELS');
      if (this.models.size > 1) throw new HttpError(400, `this server serves several models (${quoted(this.names())}): name one, as /predictions/<name>`, 'MODEL_REQUIRED');
      name = this.names()[0];
    }
    const m = this.get(name);
    const v = version ?? this.defaultVersion(name);
    const ep = m.versions.get(v);
    if (!ep) throw new HttpError(404, `model '${name}' has no version '${v}' (versions: ${quoted(m.versions.keys())})`, 'VERSION_NOT_FOUND');
    return ep;
  }

  /** Makes `version` the default of `name` (404 when either is unknown). */
  setDefault(name: string, version: string): void {
    this.resolve(name, version);
    this.get(name).explicitDefault = version;
    this.changed();
  }

  /**
   * Takes `name`'s `version` (or every version) off the routes; the endpoints stay in `all()` until `finished`.
   * 404 when unknown. An explicit default that leaves is forgotten.
   */
  take(name: string, version?: string): ModelEndpoint[] {
    const m = this.get(name);
    const eps = version === undefined ? [...m.versions.values()] : [this.resolve(name, version)];
    for (const ep of eps) {
      m.versions.delete(ep.version);
      this.leaving.add(ep);
      if (m.explicitDefault === ep.version) m.explicitDefault = undefined;
    }
    if (m.versions.size === 0) this.models.delete(name);
    this.changed();
    return eps;
  }

  /** Takes this very endpoint off the routes if it is still there (not a newer one registered under its name and version). */
  takeEndpoint(ep: ModelEndpoint): void {
    if (this.models.get(ep.name)?.versions.get(ep.version) === ep) this.take(ep.name, ep.version);
  }

  /** Forgets an endpoint that has drained (or failed to load). */
  finished(ep: ModelEndpoint): void {
    this.leaving.delete(ep);
  }

  /** One model: its default version's settings, the default version, and every version's settings. */
  describe(name: string): Record<string, unknown> {
    const def = this.defaultVersion(name);
    const versions = [...this.get(name).versions.values()];
    return { ...this.resolve(name, def).info(), defaultVersion: def, versions: versions.map((e) => e.info()) };
  }

  /** Every model, as `describe` gives it. */
  list(): Record<string, unknown>[] {
    return this.names().map((n) => this.describe(n));
  }

  /** The answer of GET /models, /models/<name> and /models/<name>/<version>. */
  answer(route: Route): unknown {
    if (route.kind === 'list') return { models: this.list() };
    if (route.version !== undefined) return this.resolve(route.name, route.version).info();
    return this.describe(route.name!);
  }

  /**
   * Readiness: at least one model registered and every registered version loaded; false with the
   * reason otherwise. Versions being unregistered have already left the routes, so their draining
   * does not take the server out of a load balancer's rotation.
   */
  readiness(): { ready: boolean; reason?: string } {
    if (this.models.size === 0) return { ready: false, reason: 'no model is registered' };
    const loading = this.endpoints().filter((e) => e.state !== 'ready');
    if (loading.length) return { ready: false, reason: `loading: ${quoted(loading.map((e) => `${e.name}/${e.version}`))}` };
    return { ready: true };
  }

  private get(name: string): Versions {
    const m = this.models.get(name);
    if (!m) throw new HttpError(404, `no model named '${name}': this server serves ${this.models.size ? quoted(this.names()) : 'no model'} (see GET /models)`, 'MODEL_NOT_FOUND');
    return m;
  }
}
