/**
 * Checks a TorchScript archive (`torch.jit.save`) before libtorch loads it: libtorch 1.x builds each storage with the
 * size its pickle declares, whatever its `data/<key>` record holds, so a record shorter than its storage would become a
 * tensor that reads (and writes) past its buffer; and a length field that runs past the end of a pickle makes libtorch
 * allocate that length first. Kiln's own unpickler walks `data.pkl` and `constants.pkl` with every class a placeholder,
 * collects the storages they name and compares them with the records.
 */
import { PickleTruncated, PyCallable, PyTuple, unpickle } from './pickle';
import { zipEntries, zipRead, ZipEntry } from './zip';

/** Bytes per element of each `torch.<Name>Storage` a TorchScript archive can name. */
const STORAGE_BYTES: Record<string, number> = {
  FloatStorage: 4, DoubleStorage: 8, HalfStorage: 2, BFloat16Storage: 2, LongStorage: 8, IntStorage: 4, ShortStorage: 2,
  CharStorage: 1, ByteStorage: 1, BoolStorage: 1, ComplexFloatStorage: 8, ComplexDoubleStorage: 16, QInt8Storage: 1,
  QUInt8Storage: 1, QInt32Storage: 4, ComplexHalfStorage: 4,
};

class Storage {
  constructor(readonly bytesPerElement: number) {}
}

/**
 * Returns what is wrong with the archive in `buf` (a record shorter than its storage, a pickle that ends before a
 * value it declares), or null when nothing is — also when the archive holds something this check does not follow
 * (libtorch's loader then decides alone).
 */
export function torchScriptArchiveProblem(buf: Buffer): string | null {
  let entries: Map<string, ZipEntry>;
  try {
    entries = zipEntries(buf);
  } catch {
    return null; // libtorch says what is wrong with the container
  }
  for (const [name, entry] of entries) {
    const m = /^(.*\/)?(data|constants)\.pkl$/.exec(name);
    if (!m) continue;
    const dir = `${m[1] ?? ''}${m[2] === 'data' ? 'data' : 'constants'}/`;
    const storages: [key: string, bytes: number][] = [];
    const placeholder = (qualname: string) => new PyCallable(qualname, () => ({}));
    try {
      unpickle(zipRead(buf, entry), {
        resolve: (module, cls) => (module === 'torch' && cls in STORAGE_BYTES ? new Storage(STORAGE_BYTES[cls]) : placeholder(`${module}.${cls}`)),
        persistentLoad: (pid) => {
          const it = pid instanceof PyTuple ? pid.items : [];
          if (it[0] === 'storage' && it[1] instanceof Storage && typeof it[2] === 'string' && Number.isSafeInteger(it[4]))
            storages.push([it[2], (it[4] as number) * it[1].bytesPerElement]);
          return {};
        },
      });
    } catch (e) {
      if (e instanceof PickleTruncated) return `${name} ends before a value it declares (${e.message})`;
      continue; // something this walk does not follow: libtorch's loader decides
    }
    for (const [key, bytes] of storages) {
      const rec = entries.get(dir + key);
      if (!rec) return `the record ${dir}${key} of a storage is missing`;
      if (rec.size < bytes) return `the record ${dir}${key} holds ${rec.size} bytes, its storage needs ${bytes}`;
    }
  }
  return null;
}
