import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { create, fromBinary, ScalarType, toBinary, type DescField, type DescFile, type DescMessage } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, isWrapperDesc, StructSchema, TimestampSchema } from "@bufbuild/protobuf/wkt";
import { HypervisordService, SubmitJobResponseSchema } from "../gen/hypervisord/v1/service_pb.js";
import { createBinaryEncoder } from "../src/server/binary-encoder.ts";

/** A small deterministic PRNG (mulberry32): a failure names its seed and can be replayed. */
function random(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  return { next, int, pick: <T>(items: readonly T[]) => items[int(items.length)]! };
}
type Random = ReturnType<typeof random>;

const STRINGS = ["", "a", "normal", "ünïcödé", "日本語のテキスト", "emoji 🚀 pair", "x".repeat(127), "y".repeat(128), "z".repeat(300), "é".repeat(70)];

function scalarValue(type: ScalarType, r: Random): unknown {
  const big = () => r.pick([0n, 1n, 127n, 128n, -1n, 2n ** 62n, -(2n ** 63n), 2n ** 63n - 1n, BigInt(r.int(2 ** 30))]);
  switch (type) {
    case ScalarType.STRING:
      return r.pick(STRINGS);
    case ScalarType.BYTES:
      return Uint8Array.from({ length: r.pick([0, 1, 5, 200]) }, () => r.int(256));
    case ScalarType.BOOL:
      return r.next() < 0.5;
    case ScalarType.DOUBLE:
      return r.pick([0, -0, 1.5, -2.25, 1e300, Number.MIN_VALUE, r.next() * 1e6]);
    case ScalarType.FLOAT:
      return r.pick([0, -0, 1.5, -2.25, 3.4e38, r.next()]);
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return r.pick([0, 1, -1, 127, 128, 2 ** 31 - 1, -(2 ** 31), r.int(100_000)]);
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return r.pick([0, 1, 127, 128, 2 ** 32 - 1, r.int(100_000)]);
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return r.pick([0n, 1n, 128n, 2n ** 64n - 1n, BigInt(r.int(2 ** 30))]);
    default:
      return big();
  }
}

function fieldValue(field: DescField, r: Random, depth: number): unknown {
  switch (field.fieldKind) {
    case "scalar":
      return scalarValue(field.scalar, r);
    case "enum":
      return r.next() < 0.9 ? r.pick(field.enum.values).number : r.int(1000) - 500;
    case "message":
      if (isWrapperDesc(field.message)) return scalarValue(field.message.fields[0]!.scalar!, r);
      return depth > 3 ? undefined : messageInit(field.message, r, depth + 1);
    case "list": {
      const n = depth > 3 ? 0 : r.pick([0, 1, 3]);
      return Array.from({ length: n }, () =>
        field.listKind === "scalar" ? scalarValue(field.scalar, r)
          : field.listKind === "enum" ? r.pick(field.enum.values).number
            : messageInit(field.message, r, depth + 1));
    }
    case "map": {
      const entries: Record<string, unknown> = {};
      for (let i = depth > 3 ? 0 : r.pick([0, 1, 3]); i > 0; i--) {
        const key = String(scalarValue(field.mapKey, r));
        entries[key] = field.mapKind === "scalar" ? scalarValue(field.scalar, r)
          : field.mapKind === "enum" ? r.pick(field.enum.values).number
            : messageInit(field.message, r, depth + 1);
      }
      return entries;
    }
  }
}

function messageInit(desc: DescMessage, r: Random, depth = 0): Record<string, unknown> {
  const init: Record<string, unknown> = {};
  for (const member of desc.members) {
    if (r.next() < 0.3) continue;
    if (member.kind === "oneof") {
      const field = r.pick(member.fields);
      const value = fieldValue(field, r, depth);
      if (value !== undefined) init[member.localName] = { case: field.localName, value };
    } else {
      const value = fieldValue(member, r, depth);
      if (value !== undefined) init[member.localName] = value;
    }
  }
  return init;
}

/** Every message type of the API's files and the files they import, nested ones included. */
function apiMessages(): DescMessage[] {
  const files = new Map<string, DescFile>();
  const visit = (file: DescFile) => {
    if (files.has(file.name)) return;
    files.set(file.name, file);
    file.dependencies.forEach(visit);
  };
  visit(HypervisordService.file);
  const messages: DescMessage[] = [];
  const add = (m: DescMessage) => {
    messages.push(m);
    m.nestedMessages.forEach(add);
  };
  for (const file of files.values()) file.messages.forEach(add);
  return messages;
}

describe("binary encoder (gRPC responses)", () => {
  test("writes the bytes toBinary writes, for random messages of every API type and of proto2 descriptor.proto", () => {
    const types = [...apiMessages(), FileDescriptorProtoSchema];
    assert.ok(types.length > 100, `only ${types.length} message types found`);
    let compared = 0;
    for (const [i, desc] of types.entries()) {
      const encode = createBinaryEncoder(desc);
      for (let n = 0; n < 20; n++) {
        const seed = i * 1000 + n;
        const message = create(desc, messageInit(desc, random(seed)) as never);
        let expected: Buffer;
        try {
          expected = Buffer.from(toBinary(desc, message));
        } catch (err) {
          // A proto2 required field left unset: refused the same way.
          assert.throws(() => encode(message), { message: (err as Error).message }, `${desc.typeName}, seed ${seed}`);
          continue;
        }
        assert.deepEqual(encode(message), expected, `${desc.typeName}, seed ${seed}`);
        compared++;
      }
    }
    assert.ok(compared > 2000);
  });

  test("keeps unknown fields, and leaves the JSON-shaped Struct to toBinary", () => {
    const encode = createBinaryEncoder(TimestampSchema);
    // seconds=5, then field 9 (varint 300) that Timestamp does not know.
    const withUnknown = fromBinary(TimestampSchema, Uint8Array.from([0x08, 0x05, 0x48, 0xac, 0x02]));
    assert.deepEqual([...encode(withUnknown)], [0x08, 0x05, 0x48, 0xac, 0x02]);
    const struct = create(StructSchema, { fields: { a: { kind: { case: "stringValue", value: "x" } } } });
    assert.deepEqual(createBinaryEncoder(StructSchema)(struct), Buffer.from(toBinary(StructSchema, struct)));
  });

  test("results are copies: a later call does not change an earlier result", () => {
    const encode = createBinaryEncoder(SubmitJobResponseSchema);
    const first = encode(create(SubmitJobResponseSchema, { job: { id: "first", definition: { vm: "vm-1", labels: { a: "b" } } }, created: true }));
    const copy = Buffer.from(first);
    encode(create(SubmitJobResponseSchema, { job: { id: "second-and-longer", definition: { vm: "vm-2" } } }));
    assert.deepEqual(first, copy);
  });
});
