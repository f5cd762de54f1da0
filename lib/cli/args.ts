/**
 * A small command-line parser for `kiln` (no dependency): `--flag value`, `--flag=value`,
 * boolean `--flag` / `--no-flag`, typed values (int, number, enum) and positional arguments.
 * Every mistake is a `UsageError` with a one-line message naming the flag.
 */
import { KilnError } from '../errors';

/** A user mistake on the command line (printed without a stack, exit code 2). */
export class UsageError extends KilnError {
  constructor(message: string) {
    super(message, 'USAGE');
    this.name = 'UsageError';
  }
}

/** How one flag is parsed. */
export interface FlagSpec {
  type: 'string' | 'int' | 'number' | 'boolean';
  /** allowed values (strings) */
  choices?: readonly string[];
  /** minimum for numbers */
  min?: number;
  /** maximum for numbers */
  max?: number;
  default?: string | number | boolean;
  /** one-letter alias, e.g. 'h' */
  alias?: string;
  help: string;
  /** placeholder in the help text (default: the type) */
  meta?: string;
  /** may be given several times: every value is kept, in order, in `Parsed.lists` (string flags) */
  multiple?: boolean;
}

/** Parsed flags and positional arguments. */
export interface Parsed {
  flags: Record<string, string | number | boolean | undefined>;
  positional: string[];
  /** every value of each `multiple` flag, in order (`flags` holds the last) */
  lists: Record<string, string[]>;
  /** the flags given on the command line (the rest of `flags` are defaults) */
  given: Set<string>;
}

/** Parses `argv` (without the command name) against `spec`. */
export function parseArgs(argv: string[], spec: Record<string, FlagSpec>, command: string): Parsed {
  const flags: Parsed['flags'] = {};
  const positional: string[] = [];
  const lists: Parsed['lists'] = {};
  const given = new Set<string>();
  const aliases = new Map<string, string>();
  for (const [k, s] of Object.entries(spec)) if (s.alias) aliases.set(s.alias, k);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (!a.startsWith('-') || a === '-') {
      positional.push(a);
      continue;
    }
    let name: string, value: string | undefined;
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      name = eq >= 0 ? a.slice(2, eq) : a.slice(2);
      value = eq >= 0 ? a.slice(eq + 1) : undefined;
    } else {
      const al = aliases.get(a.slice(1));
      if (!al) throw new UsageError(`unknown option ${a} for 'kiln ${command}' (see kiln ${command} --help)`);
      name = al;
    }
    let s = spec[name];
    if (!s && name.startsWith('no-') && spec[name.slice(3)]?.type === 'boolean') {
      flags[name.slice(3)] = false;
      given.add(name.slice(3));
      continue;
    }
    if (!s) {
      const near = closest(name, Object.keys(spec));
      throw new UsageError(`unknown option --${name} for 'kiln ${command}'${near ? ` (did you mean --${near}?)` : ''}`);
    }
    if (s.type === 'boolean') {
      if (value !== undefined && !['true', 'false', '1', '0'].includes(value)) throw new UsageError(`--${name} takes no value (got '${value}')`);
      flags[name] = value === undefined ? true : value === 'true' || value === '1';
      given.add(name);
      continue;
    }
    if (value === undefined) {
      if (i + 1 >= argv.length || (argv[i + 1].startsWith('--') && !/^-\d/.test(argv[i + 1]))) throw new UsageError(`--${name} needs a value (${s.meta ?? s.choices?.join('|') ?? s.type})`);
      value = argv[++i];
    }
    flags[name] = convert(name, value, s);
    given.add(name);
    if (s.multiple) (lists[name] ??= []).push(String(flags[name]));
    s = spec[name];
  }
  for (const [k, s] of Object.entries(spec)) if (flags[k] === undefined && s.default !== undefined) flags[k] = s.default;
  return { flags, positional, lists, given };
}

function convert(name: string, v: string, s: FlagSpec, label = `--${name}`): string | number {
  if (s.type === 'string') {
    if (s.choices && !s.choices.includes(v)) throw new UsageError(`${label} must be one of ${s.choices.join(', ')} (got '${clip(v)}')`);
    if (v === '') throw new UsageError(`${label} needs a non-empty value`);
    return v;
  }
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n) || (s.type === 'int' && !Number.isInteger(n)))
    throw new UsageError(`${label} must be ${s.type === 'int' ? 'an integer' : 'a number'} (got '${clip(v)}')`);
  if (s.min !== undefined && n < s.min) throw new UsageError(`${label} must be ≥ ${s.min} (got ${v})`);
  if (s.max !== undefined && n > s.max) throw new UsageError(`${label} must be ≤ ${s.max} (got ${v})`);
  return n;
}

const clip = (v: string) => (v.length > 64 ? `${v.slice(0, 64)}…` : v);

/**
 * A flag's value read from a JSON file rather than the command line: it must already have the flag's JSON type (a
 * string, a number or true/false) and pass the same checks; `label` names it in the error (e.g. `serve.json: port`).
 */
export function checkJsonValue(v: unknown, s: FlagSpec, label: string): string | number | boolean {
  const want = s.type === 'boolean' ? 'boolean' : s.type === 'string' ? 'string' : 'number';
  if (typeof v !== want) {
    const got = v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'string' ? `'${clip(v)}'` : typeof v === 'object' ? 'an object' : String(v);
    throw new UsageError(`${label} must be ${s.type === 'boolean' ? 'true or false' : s.type === 'string' ? (s.choices ? `one of ${s.choices.join(', ')}` : 'a string') : s.type === 'int' ? 'an integer' : 'a number'} (got ${got})`);
  }
  return typeof v === 'boolean' ? v : convert('', String(v), s, label);
}

/** The closest known name by edit distance (for "did you mean"), if close enough. */
function closest(name: string, names: string[]): string | null {
  let best: string | null = null, bestD = Infinity;
  for (const n of names) {
    const d = editDistance(name, n);
    if (d < bestD) {
      bestD = d;
      best = n;
    }
  }
  return bestD <= Math.max(2, Math.floor(name.length / 3)) ? best : null;
}

function editDistance(a: string, b: string): number {
  const dp = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = dp[0];
    dp[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const t = dp[j];
      dp[j] = Math.min(dp[j] + 1, dp[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = t;
    }
  }
  return dp[b.length];
}

/** The options section of a command's help text. */
export function formatOptions(spec: Record<string, FlagSpec>): string {
  const rows = Object.entries(spec).map(([k, s]) => {
    const meta = s.type === 'boolean' ? '' : ` <${s.meta ?? (s.choices ? s.choices.join('|') : s.type === 'int' ? 'n' : s.type === 'number' ? 'x' : 'value')}>`;
    const left = `${s.alias ? `-${s.alias}, ` : ''}--${k}${meta}`;
    const dflt = s.default !== undefined && s.type !== 'boolean' ? ` (default ${s.default})` : '';
    return [left, s.help + dflt + (s.multiple ? ' (repeatable)' : '')];
  });
  const w = Math.min(40, Math.max(...rows.map((r) => r[0].length)));
  return rows.map(([l, r]) => `  ${l.padEnd(w)}  ${r}`).join('\n');
}

/** Parses a non-negative number written as a decimal or a fraction ("0.03", "8/255") for `flag`. */
export function parseFraction(s: string, flag: string): number {
  const num = '((?:[0-9]+\\.?[0-9]*|\\.[0-9]+)(?:[eE][+-]?[0-9]+)?)'; // 0.03, 1., .5, 1e-3
  const m = new RegExp(`^\\s*${num}\\s*(?:\\/\\s*${num})?\\s*$`).exec(s);
  const v = m ? Number(m[1]) / (m[2] === undefined ? 1 : Number(m[2])) : NaN;
  if (m && !Number.isFinite(v)) throw new UsageError(`${flag}: '${s}' is not a finite number (${m[2] !== undefined && Number(m[2]) === 0 ? 'division by zero' : 'too large'})`);
  if (!Number.isFinite(v) || v < 0) throw new UsageError(`${flag}: '${s}' is not a non-negative number (use numbers like 0.03 or fractions like 8/255)`);
  return v;
}

/** Creates the output folder `dir` (`--out`); a path that is a file, or one that cannot be made, is a usage error. */
export function outputFolder(dir: string, flag = '--out'): void {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const fs = require('fs') as typeof import('fs');
  try {
    if (fs.existsSync(dir) && !fs.statSync(dir).isDirectory()) throw new UsageError(`${flag} ${dir} is a file, not a folder`);
    fs.mkdirSync(dir, { recursive: true });
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`${flag} ${dir}: cannot create the folder (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}
