/**
 * A restricted unpickler (Python's pickle protocols 2–5, the opcodes `torch.save` and plain data
 * use). It builds JS values — None → null, int/float → number (bigint past 2^53), str → string,
 * bytes → Buffer, list → array, tuple → `PyTuple`, dict → Map — and never runs arbitrary code:
 * a global (a class or function) is looked up in the caller's `resolve`, and one it does not
 * know throws a `PickleError` naming it. BUILD (restoring an object's attributes, such as a
 * state_dict's `_metadata`) is ignored: only data is read.
 */

/** A malformed pickle, or one that needs a Python class this reader does not rebuild. */
export class PickleError extends Error {}

/** The pickle ends before a value it declares (truncated, or a length field that lies). */
export class PickleTruncated extends PickleError {}

/** A Python tuple. */
export class PyTuple {
  constructor(readonly items: unknown[]) {}
}

/** A Python callable a global resolved to (called by REDUCE / NEWOBJ with its arguments). */
export class PyCallable {
  constructor(readonly qualname: string, readonly call: (args: unknown[]) => unknown) {}
}

/** How globals and persistent ids (out-of-band data such as tensor storages) are resolved. */
export interface UnpickleHooks {
  /** The value of `module.name` (a `PyCallable` for classes and functions), or undefined if not allowed. */
  resolve(module: string, name: string): unknown;
  /** The object a persistent id stands for. */
  persistentLoad(pid: unknown): unknown;
}

const MARK = Symbol('mark');

/** Unpickles `data` (one pickle, up to its STOP opcode). */
export function unpickle(data: Buffer, hooks: UnpickleHooks): unknown {
  let p = 0;
  const stack: unknown[] = [];
  const marks: number[] = [];
  const memo = new Map<number, unknown>();
  const need = (n: number) => {
    if (p + n > data.length) throw new PickleTruncated('the pickle ends early (truncated?)');
  };
  const u8 = () => { need(1); return data[p++]; };
  const bytes = (n: number) => { need(n); const b = data.subarray(p, p + n); p += n; return b; };
  const u16 = () => { need(2); const v = data.readUInt16LE(p); p += 2; return v; };
  const u32 = () => { need(4); const v = data.readUInt32LE(p); p += 4; return v; };
  const u64 = () => {
    need(8);
    const v = data.readBigUInt64LE(p);
    p += 8;
    if (v > BigInt(data.length)) throw new PickleTruncated('a length runs past the end of the pickle');
    return Number(v);
  };
  const line = () => {
    const end = data.indexOf(0x0a, p);
    if (end < 0) throw new PickleError('a GLOBAL opcode without its newline');
    const s = data.toString('utf8', p, end);
    p = end + 1;
    return s;
  };
  const pop = () => {
    if (stack.length === 0 || (marks.length && stack.length <= marks[marks.length - 1])) throw new PickleError('the pickle pops an empty stack');
    return stack.pop();
  };
  const top = () => {
    if (stack.length === 0) throw new PickleError('the pickle reads an empty stack');
    return stack[stack.length - 1];
  };
  const popMark = () => {
    const m = marks.pop();
    if (m === undefined) throw new PickleError('the pickle has no MARK where one is needed');
    return stack.splice(m);
  };
  const global = (module: string, name: string) => {
    const v = hooks.resolve(module, name);
    if (v === undefined) throw new PickleError(`it holds a pickled ${module}.${name}, which only Python can rebuild`);
    stack.push(v);
  };
  const call = (fn: unknown, args: unknown) => {
    if (!(fn instanceof PyCallable)) throw new PickleError('the pickle calls something that is not a class or function');
    if (!(args instanceof PyTuple)) throw new PickleError(`${fn.qualname} is called without an argument tuple`);
    stack.push(fn.call(args.items));
  };
  const long = (b: Buffer) => {
    if (b.length === 0) return 0;
    // little-endian two's complement; read through hex, linear in the length (a shift per byte is quadratic)
    let v = BigInt(`0x${Buffer.from(b).reverse().toString('hex')}`);
    if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  const setItems = (dict: unknown, items: unknown[]) => {
    if (!(dict instanceof Map)) throw new PickleError('the pickle sets items on something that is not a dict');
    for (let i = 0; i + 1 < items.length; i += 2) dict.set(items[i], items[i + 1]);
  };
  const append = (list: unknown, items: unknown[]) => {
    if (!Array.isArray(list)) throw new PickleError('the pickle appends to something that is not a list');
    for (const it of items) list.push(it); // not push(...items): a long APPENDS would overflow the call stack
  };
  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80: u8(); break; // PROTO
      case 0x95: bytes(8); break; // FRAME
      case 0x2e: // STOP
        if (stack.length !== 1) throw new PickleError(`the pickle stops with ${stack.length} values on its stack`);
        return stack[0];
      case 0x28: marks.push(stack.length); break; // MARK
      case 0x31: popMark(); break; // POP_MARK
      case 0x30: pop(); break; // POP
      case 0x32: stack.push(top()); break; // DUP
      case 0x4e: stack.push(null); break; // NONE
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x4a: need(4); stack.push(data.readInt32LE(p)); p += 4; break; // BININT
      case 0x4b: stack.push(u8()); break; // BININT1
      case 0x4d: stack.push(u16()); break; // BININT2
      case 0x8a: stack.push(long(bytes(u8()))); break; // LONG1
      case 0x8b: stack.push(long(bytes(u32()))); break; // LONG4
      case 0x47: need(8); stack.push(data.readDoubleBE(p)); p += 8; break; // BINFLOAT
      case 0x58: { const n = u32(); stack.push(bytes(n).toString('utf8')); break; } // BINUNICODE
      case 0x8c: { const n = u8(); stack.push(bytes(n).toString('utf8')); break; } // SHORT_BINUNICODE
      case 0x8d: { const n = u64(); stack.push(bytes(n).toString('utf8')); break; } // BINUNICODE8
      case 0x54: { const n = u32(); stack.push(bytes(n).toString('latin1')); break; } // BINSTRING
      case 0x55: { const n = u8(); stack.push(bytes(n).toString('latin1')); break; } // SHORT_BINSTRING
      case 0x42: { const n = u32(); stack.push(Buffer.from(bytes(n))); break; } // BINBYTES
      case 0x43: { const n = u8(); stack.push(Buffer.from(bytes(n))); break; } // SHORT_BINBYTES
      case 0x8e: { const n = u64(); stack.push(Buffer.from(bytes(n))); break; } // BINBYTES8
      case 0x29: stack.push(new PyTuple([])); break; // EMPTY_TUPLE
      case 0x85: stack.push(new PyTuple([pop()])); break; // TUPLE1
      case 0x86: { const b = pop(), a = pop(); stack.push(new PyTuple([a, b])); break; } // TUPLE2
      case 0x87: { const c = pop(), b = pop(), a = pop(); stack.push(new PyTuple([a, b, c])); break; } // TUPLE3
      case 0x74: stack.push(new PyTuple(popMark())); break; // TUPLE
      case 0x5d: stack.push([]); break; // EMPTY_LIST
      case 0x6c: stack.push(popMark()); break; // LIST
      case 0x61: { const v = pop(); append(top(), [v]); break; } // APPEND
      case 0x65: { const items = popMark(); append(top(), items); break; } // APPENDS
      case 0x7d: stack.push(new Map()); break; // EMPTY_DICT
      case 0x64: { const d = new Map(); setItems(d, popMark()); stack.push(d); break; } // DICT
      case 0x73: { const v = pop(), k = pop(); setItems(top(), [k, v]); break; } // SETITEM
      case 0x75: { const items = popMark(); setItems(top(), items); break; } // SETITEMS
      case 0x71: memo.set(u8(), top()); break; // BINPUT
      case 0x72: memo.set(u32(), top()); break; // LONG_BINPUT
      case 0x94: memo.set(memo.size, top()); break; // MEMOIZE
      case 0x68: case 0x6a: { // BINGET, LONG_BINGET
        const i = op === 0x68 ? u8() : u32();
        if (!memo.has(i)) throw new PickleError(`the pickle refers to memo entry ${i}, which it never stored`);
        stack.push(memo.get(i));
        break;
      }
      case 0x63: { const module = line(); global(module, line()); break; } // GLOBAL
      case 0x93: { // STACK_GLOBAL
        const name = pop(), module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') throw new PickleError('STACK_GLOBAL without two strings');
        global(module, name);
        break;
      }
      case 0x52: { const args = pop(); call(pop(), args); break; } // REDUCE
      case 0x81: { const args = pop(); call(pop(), args); break; } // NEWOBJ
      case 0x62: pop(); break; // BUILD: the object's attributes are not restored
      case 0x51: stack.push(hooks.persistentLoad(pop())); break; // BINPERSID
      default:
        throw new PickleError(`unsupported or invalid pickle opcode 0x${op.toString(16)} at byte ${p - 1}`);
    }
  }
}
