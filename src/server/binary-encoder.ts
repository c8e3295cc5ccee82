import { ScalarType, toBinary, type DescField, type DescMessage } from "@bufbuild/protobuf";
import { isScalarZeroValue } from "@bufbuild/protobuf/reflect";
import { isWrapperDesc } from "@bufbuild/protobuf/wkt";

/**
 * A protobuf binary encoder for one message type, compiled once from its descriptor: the same bytes as
 * protobuf-es's toBinary (fields in number order, then unknown fields), without its per-call reflection
 * (a wrapper object per message, a presence check through the descriptor per field, a chunk per sub-message).
 * A SubmitJob response took toBinary ~35 µs here, a tenth of the daemon's whole call. Types it does not
 * compile (groups, proto2 required fields, and the JSON-shaped google.protobuf.Struct, Value, ListValue), and
 * the types that hold them, are left to toBinary.
 */
export function createBinaryEncoder(desc: DescMessage): (message: unknown) => Buffer {
  const encode = compile(desc, new Map());
  if (!encode) return (message) => Buffer.from(toBinary(desc, message as never));
  return (message) => {
    writer.pos = 0;
    encode(writer, message as Fields);
    return Buffer.from(writer.buf.subarray(0, writer.pos));
  };
}

type Fields = Record<string, unknown>;
type Encode = (w: Writer, message: Fields) => void;
type WriteValue = (w: Writer, value: unknown) => void;

/** One buffer reused by every call (encoding is synchronous); each result is a copy of its bytes. */
class Writer {
  buf = Buffer.allocUnsafe(4096);
  pos = 0;

  ensure(more: number): void {
    if (this.pos + more <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + more));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  /** A fixed-width value: `write` puts it at `pos` of a buffer with `bytes` free there and returns the end. */
  fixed(bytes: number, write: (buf: Buffer, pos: number) => number): void {
    this.ensure(bytes);
    this.pos = write(this.buf, this.pos);
  }

  /** A varint of a number in [0, 2^53) (tags, lengths, non-negative int32 and enum values). */
  varint(n: number): void {
    this.ensure(10);
    const buf = this.buf;
    while (n > 127) {
      buf[this.pos++] = (n & 127) | 128;
      n = Math.floor(n / 128);
    }
    buf[this.pos++] = n;
  }

  /** A 64-bit varint (two's complement for negatives, 10 bytes). */
  varint64(n: bigint): void {
    let v = BigInt.asUintN(64, n);
    this.ensure(10);
    while (v > 127n) {
      this.buf[this.pos++] = Number(v & 127n) | 128;
      v >>= 7n;
    }
    this.buf[this.pos++] = Number(v);
  }

  int32(n: number): void {
    if (n >= 0) this.varint(n);
    else this.varint64(BigInt(n)); // sign-extended to 10 bytes, as the spec (and toBinary) does
  }

  string(s: string): void {
    const length = s.length;
    this.ensure(length * 3 + 5);
    // Most strings here are ASCII: copied by hand, their length known up front.
    if (length < 128) {
      const start = this.pos + 1;
      const buf = this.buf;
      let i = 0;
      for (; i < length; i++) {
        const c = s.charCodeAt(i);
        if (c >= 128) break;
        buf[start + i] = c;
      }
      if (i === length) {
        buf[this.pos] = length;
        this.pos = start + length;
        return;
      }
    }
    const bytes = Buffer.byteLength(s);
    this.varint(bytes);
    this.buf.write(s, this.pos, bytes, "utf8");
    this.pos += bytes;
  }

  bytes(b: Uint8Array): void {
    this.varint(b.length);
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  /** Writes a length-delimited part: one byte is kept for the length, the content moved when it needs more. */
  delimited(write: () => void): void {
    this.ensure(1);
    const at = this.pos++;
    write();
    const length = this.pos - at - 1;
    if (length < 128) {
      this.buf[at] = length;
      return;
    }
    let extra = 0;
    for (let n = length; n > 127; n = Math.floor(n / 128)) extra++;
    this.ensure(extra);
    this.buf.copyWithin(at + 1 + extra, at + 1, this.pos);
    const end = this.pos + extra;
    this.pos = at;
    this.varint(length);
    this.pos = end;
  }

  raw(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }
}

const writer = new Writer();

const VARINT = 0;
const BIT64 = 1;
const LENGTH_DELIMITED = 2;
const BIT32 = 5;
/** FeatureSet.FieldPresence.IMPLICIT (proto3 fields without `optional`) and LEGACY_REQUIRED (proto2 `required`). */
const IMPLICIT = 2;
const LEGACY_REQUIRED = 3;

const toBigInt = (value: unknown) => (typeof value === "bigint" ? value : BigInt(value as string | number));

/** The writer of one scalar value, and its wire type. */
function scalarWriter(type: ScalarType): [WriteValue, number] {
  switch (type) {
    case ScalarType.STRING:
      return [(w, v) => w.string(v as string), LENGTH_DELIMITED];
    case ScalarType.BYTES:
      return [(w, v) => w.bytes(v as Uint8Array), LENGTH_DELIMITED];
    case ScalarType.BOOL:
      return [(w, v) => w.varint(v ? 1 : 0), VARINT];
    case ScalarType.INT32:
      return [(w, v) => w.int32(v as number), VARINT];
    case ScalarType.UINT32:
      return [(w, v) => w.varint((v as number) >>> 0), VARINT];
    case ScalarType.SINT32:
      return [(w, v) => w.varint((((v as number) << 1) ^ ((v as number) >> 31)) >>> 0), VARINT];
    case ScalarType.INT64:
    case ScalarType.UINT64:
      return [(w, v) => w.varint64(toBigInt(v)), VARINT];
    case ScalarType.SINT64:
      return [(w, v) => {
        const n = BigInt.asIntN(64, toBigInt(v));
        w.varint64((n << 1n) ^ (n >> 63n));
      }, VARINT];
    case ScalarType.DOUBLE:
      return [(w, v) => w.fixed(8, (buf, pos) => buf.writeDoubleLE(v as number, pos)), BIT64];
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      return [(w, v) => w.fixed(8, (buf, pos) => buf.writeBigUInt64LE(BigInt.asUintN(64, toBigInt(v)), pos)), BIT64];
    case ScalarType.FLOAT:
      return [(w, v) => w.fixed(4, (buf, pos) => buf.writeFloatLE(v as number, pos)), BIT32];
    case ScalarType.FIXED32:
      return [(w, v) => w.fixed(4, (buf, pos) => buf.writeUInt32LE((v as number) >>> 0, pos)), BIT32];
    case ScalarType.SFIXED32:
      return [(w, v) => w.fixed(4, (buf, pos) => buf.writeInt32LE(v as number, pos)), BIT32];
  }
}

const tagOf = (no: number, wireType: number) => no * 8 + wireType;
const UNSUPPORTED = new Set(["google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"]);

/** The encoder of a message type's fields; undefined when the type (or one it holds) is not compiled here. */
function compile(desc: DescMessage, compiled: Map<string, Encode>): Encode | undefined {
  const known = compiled.get(desc.typeName);
  if (known) return known;
  if (UNSUPPORTED.has(desc.typeName)) return undefined;
  const fieldWriters: Encode[] = [];
  // Registered before the fields, so that a recursive type refers to itself.
  const encode: Encode = (w, message) => {
    for (let i = 0; i < fieldWriters.length; i++) fieldWriters[i]!(w, message);
    const unknown = message.$unknown as { no: number; wireType: number; data: Uint8Array }[] | undefined;
    if (unknown) {
      for (const { no, wireType, data } of unknown) {
        w.varint(tagOf(no, wireType));
        w.raw(data);
      }
    }
  };
  compiled.set(desc.typeName, encode);
  for (const field of [...desc.fields].sort((a, b) => a.number - b.number)) {
    const write = compileField(field, compiled);
    if (!write) {
      compiled.delete(desc.typeName);
      return undefined;
    }
    fieldWriters.push(write);
  }
  return encode;
}

function compileField(field: DescField, compiled: Map<string, Encode>): Encode | undefined {
  // Groups, and proto2's required fields (toBinary refuses a message without them): left to toBinary.
  if (("delimitedEncoding" in field && field.delimitedEncoding) || field.presence === LEGACY_REQUIRED) return undefined;
  const name = field.localName;
  const no = field.number;
  const value = compileValue(field, compiled);
  if (!value) return undefined;
  if (field.oneof) {
    const oneof = field.oneof.localName;
    return (w, message) => {
      const selected = message[oneof] as { case?: string; value?: unknown } | undefined;
      if (selected?.case === name) value(w, selected.value);
    };
  }
  switch (field.fieldKind) {
    case "list": {
      if (field.listKind !== "message" && field.packed) {
        const [item] = field.listKind === "enum" ? [(w: Writer, v: unknown) => w.int32(v as number)] : scalarWriter(field.scalar);
        const tag = tagOf(no, LENGTH_DELIMITED);
        return (w, message) => {
          const items = message[name] as unknown[] | undefined;
          if (!items || items.length === 0) return;
          w.varint(tag);
          w.delimited(() => {
            for (const v of items) item(w, v);
          });
        };
      }
      return (w, message) => {
        const items = message[name] as unknown[] | undefined;
        if (items) for (const v of items) value(w, v);
      };
    }
    case "map":
      return (w, message) => {
        const entries = message[name] as Record<string, unknown> | undefined;
        if (entries) for (const key in entries) value(w, [key, entries[key]]);
      };
    case "message":
      return (w, message) => {
        const v = message[name];
        if (v !== undefined && v !== null) value(w, v);
      };
    default: {
      if (field.presence !== IMPLICIT) {
        return (w, message) => {
          if (message[name] !== undefined && Object.prototype.hasOwnProperty.call(message, name)) value(w, message[name]);
        };
      }
      const zero = field.fieldKind === "enum" ? field.enum.values[0]!.number : undefined;
      return field.fieldKind === "enum"
        ? (w, message) => {
            if (message[name] !== zero) value(w, message[name]);
          }
        : (w, message) => {
            if (!isScalarZeroValue(field.scalar, message[name])) value(w, message[name]);
          };
    }
  }
}

/** The writer of one value of the field (one item of a list, one [key, value] entry of a map), tag included. */
function compileValue(field: DescField, compiled: Map<string, Encode>): WriteValue | undefined {
  const no = field.number;
  const kind = field.fieldKind === "list" ? field.listKind : field.fieldKind;
  if (field.fieldKind === "map") {
    const [key, keyWire] = scalarWriter(field.mapKey);
    const keyOf = mapKeyReader(field.mapKey);
    let item: WriteValue | undefined;
    if (field.mapKind === "message") {
      const inner = compile(field.message, compiled);
      if (!inner) return undefined;
      item = (w, v) => {
        w.varint(tagOf(2, LENGTH_DELIMITED));
        w.delimited(() => inner(w, v as Fields));
      };
    } else {
      const [write, wire] = field.mapKind === "enum" ? [(w: Writer, v: unknown) => w.int32(v as number), VARINT] as const : scalarWriter(field.scalar);
      item = (w, v) => {
        w.varint(tagOf(2, wire));
        write(w, v);
      };
    }
    const tag = tagOf(no, LENGTH_DELIMITED);
    return (w, entry) => {
      const [k, v] = entry as [string, unknown];
      w.varint(tag);
      w.delimited(() => {
        w.varint(tagOf(1, keyWire));
        key(w, keyOf(k));
        item(w, v);
      });
    };
  }
  if (kind === "message") {
    const message = field.message!;
    const inner = compile(message, compiled);
    if (!inner) return undefined;
    const tag = tagOf(no, LENGTH_DELIMITED);
    // A singular google.protobuf.*Value field holds its plain value (protobuf-es unboxes wrappers).
    if (field.fieldKind === "message" && isWrapperDesc(message)) {
      return (w, v) => {
        w.varint(tag);
        w.delimited(() => inner(w, typeof v === "object" && v !== null && !(v instanceof Uint8Array) ? v as Fields : { value: v }));
      };
    }
    return (w, v) => {
      w.varint(tag);
      w.delimited(() => inner(w, v as Fields));
    };
  }
  if (kind === "enum") {
    const tag = tagOf(no, VARINT);
    return (w, v) => {
      w.varint(tag);
      w.int32(v as number);
    };
  }
  const [write, wire] = scalarWriter(field.scalar!);
  const tag = tagOf(no, wire);
  return (w, v) => {
    w.varint(tag);
    write(w, v);
  };
}

/** Map keys are object keys (strings): back to the key type's value. */
function mapKeyReader(type: ScalarType): (key: string) => unknown {
  switch (type) {
    case ScalarType.STRING:
      return (key) => key;
    case ScalarType.BOOL:
      return (key) => key === "true";
    case ScalarType.INT64:
    case ScalarType.UINT64:
    case ScalarType.SINT64:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      return (key) => BigInt(key);
    default:
      return (key) => Number(key);
  }
}
