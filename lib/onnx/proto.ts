/**
 * A minimal protobuf wire-format writer and the ONNX messages `kiln.onnx.export` writes (field
 * numbers from onnx/onnx.proto): ModelProto, OperatorSetIdProto, GraphProto, NodeProto,
 * AttributeProto, TensorProto, ValueInfoProto, TypeProto.Tensor, TensorShapeProto. Write-only; no
 * generated code, no runtime dependency.
 */

/** Protobuf wire types. */
const VARINT = 0, LEN = 2, FIXED32 = 5;

/** A protobuf message under construction: fields are appended in order, `finish()` joins them. */
export class ProtoWriter {
  private chunks: Uint8Array[] = [];
  private size = 0;

  private push(b: Uint8Array): void {
    this.chunks.push(b);
    this.size += b.length;
  }

  /** A base-128 varint; negative numbers as 64-bit two's complement (10 bytes), as int64 requires. */
  private varint(v: number): void {
    if (!Number.isSafeInteger(v)) throw new RangeError(`protobuf: ${v} is not an integer`);
    let n = BigInt.asUintN(64, BigInt(v));
    const out: number[] = [];
    while (n >= 0x80n) {
      out.push(Number(n & 0x7fn) | 0x80);
      n >>= 7n;
    }
    out.push(Number(n));
    this.push(Uint8Array.from(out));
  }

  private tag(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }

  /** An int32/int64/enum field (varint). */
  int(field: number, v: number): this {
    this.tag(field, VARINT);
    this.varint(v);
    return this;
  }

  /** A float field (fixed32, little-endian). */
  float(field: number, v: number): this {
    this.tag(field, FIXED32);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.push(b);
    return this;
  }

  /** A length-delimited field: raw bytes, a UTF-8 string, or an embedded message. */
  bytes(field: number, v: Uint8Array | string | ProtoWriter): this {
    const b = typeof v === 'string' ? Buffer.from(v, 'utf8') : v instanceof ProtoWriter ? v.finish() : v;
    this.tag(field, LEN);
    this.varint(b.length);
    this.push(b);
    return this;
  }

  /** A packed repeated int64 field. */
  packedInts(field: number, vs: readonly number[]): this {
    const inner = new ProtoWriter();
    for (const v of vs) inner.varint(v);
    return this.bytes(field, inner);
  }

  /** The serialized message. */
  finish(): Uint8Array {
    return Buffer.concat(this.chunks, this.size);
  }
}

/** TensorProto.DataType values used here. */
export const FLOAT = 1, INT64 = 7;

/** An ONNX node attribute (AttributeProto's INT, INTS, FLOAT, FLOATS and STRING kinds). */
export type OnnxAttr =
  | { name: string; int: number }
  | { name: string; ints: number[] }
  | { name: string; float: number }
  | { name: string; floats: number[] }
  | { name: string; string: string };

/** An ONNX node: `op` (an ai.onnx operator) reads `inputs` and writes `outputs` (value names). */
export interface OnnxNode {
  op: string;
  name: string;
  inputs: string[];
  outputs: string[];
  attrs: OnnxAttr[];
}

/** A constant tensor of the graph: FLOAT or INT64 data as little-endian bytes. */
export interface OnnxInitializer {
  name: string;
  dims: number[];
  dataType: typeof FLOAT | typeof INT64;
  raw: Uint8Array;
}

/** A graph input or output: a tensor of `elemType` whose dimensions are sizes, symbolic names, or null (unknown). */
export interface OnnxValueInfo {
  name: string;
  elemType: number;
  dims: (number | string | null)[];
}

/** What `encodeModel` serializes. */
export interface OnnxModel {
  irVersion: number;
  opset: number;
  producerName: string;
  producerVersion: string;
  graphName: string;
  nodes: OnnxNode[];
  initializers: OnnxInitializer[];
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
}

function attribute(a: OnnxAttr): ProtoWriter {
  const w = new ProtoWriter().bytes(1, a.name); // name = 1
  // type = 20: FLOAT 1, INT 2, STRING 3, FLOATS 6, INTS 7; values: f = 2, i = 3, s = 4, floats = 7, ints = 8
  if ('int' in a) return w.int(20, 2).int(3, a.int);
  if ('float' in a) return w.int(20, 1).float(2, a.float);
  if ('string' in a) return w.int(20, 3).bytes(4, a.string);
  if ('ints' in a) return w.int(20, 7).packedInts(8, a.ints);
  const b = new Uint8Array(4 * a.floats.length);
  const view = new DataView(b.buffer);
  a.floats.forEach((f, i) => view.setFloat32(4 * i, f, true));
  return w.int(20, 6).bytes(7, b); // repeated float, packed: length-delimited little-endian floats
}

function node(n: OnnxNode): ProtoWriter {
  const w = new ProtoWriter();
  for (const i of n.inputs) w.bytes(1, i); // input = 1
  for (const o of n.outputs) w.bytes(2, o); // output = 2
  w.bytes(3, n.name).bytes(4, n.op); // name = 3, op_type = 4
  for (const a of n.attrs) w.bytes(5, attribute(a)); // attribute = 5
  return w;
}

function tensor(t: OnnxInitializer): ProtoWriter {
  // dims = 1 (packed), data_type = 2, name = 8, raw_data = 9
  return new ProtoWriter().packedInts(1, t.dims).int(2, t.dataType).bytes(8, t.name).bytes(9, t.raw);
}

function valueInfo(v: OnnxValueInfo): ProtoWriter {
  const shape = new ProtoWriter(); // TensorShapeProto: dim = 1; Dimension: dim_value = 1, dim_param = 2
  for (const d of v.dims) {
    const dim = new ProtoWriter();
    if (typeof d === 'number') dim.int(1, d);
    else if (typeof d === 'string') dim.bytes(2, d);
    shape.bytes(1, dim);
  }
  const tensorType = new ProtoWriter().int(1, v.elemType).bytes(2, shape); // TypeProto.Tensor: elem_type = 1, shape = 2
  const type = new ProtoWriter().bytes(1, tensorType); // TypeProto: tensor_type = 1
  return new ProtoWriter().bytes(1, v.name).bytes(2, type); // ValueInfoProto: name = 1, type = 2
}

/** A ModelProto's bytes: one graph importing the default (ai.onnx) opset. */
export function encodeModel(m: OnnxModel): Uint8Array {
  const graph = new ProtoWriter(); // GraphProto: node = 1, name = 2, initializer = 5, input = 11, output = 12
  for (const n of m.nodes) graph.bytes(1, node(n));
  graph.bytes(2, m.graphName);
  for (const t of m.initializers) graph.bytes(5, tensor(t));
  for (const i of m.inputs) graph.bytes(11, valueInfo(i));
  for (const o of m.outputs) graph.bytes(12, valueInfo(o));
  const opset = new ProtoWriter().bytes(1, '').int(2, m.opset); // OperatorSetIdProto: domain = 1, version = 2
  // ModelProto: ir_version = 1, producer_name = 2, producer_version = 3, graph = 7, opset_import = 8
  return new ProtoWriter().int(1, m.irVersion).bytes(2, m.producerName).bytes(3, m.producerVersion).bytes(7, graph).bytes(8, opset).finish();
}
