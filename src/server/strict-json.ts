import { ScalarType, type DescEnum, type DescField, type DescMessage } from "@bufbuild/protobuf";
import { InvalidArgumentError, quoteInput } from "../errors.ts";

/**
 * Connect JSON requests checked against the request's schema before protobuf-es reads them. Plain
 * protobuf JSON parsing as connect-es configures it ignores unknown keys and unknown enum names, so a
 * typo ("compres": true) is dropped and "format": "OVA" leaves the format unset: a job other than the one
 * asked for. Here every unknown key, unknown enum name and value of the wrong JSON type is
 * INVALID_ARGUMENT naming the field by its proto path (definition.labels["team"], definitions[2].format).
 * Enum numbers pass as in protobuf (the handlers refuse the ones they cannot use).
 * Enum names are also accepted case-insensitively and without their shared prefix ("ova", "queued",
 * "powered_on", "run_once"), and rewritten to their proto names for the parser.
 * Messages never quote more than the first characters of a value (quoteInput).
 */

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** A JSON value checked against a message type: the value to parse (enum names made canonical), or a throw. */
export type StrictJsonCheck = (value: unknown) => unknown;

interface EnumPlan {
  /** Upper-cased full name or short form -> the proto name. */
  names: Map<string, string>;
  /** For messages: "EXPORT_FORMAT_OVF, EXPORT_FORMAT_OVA (or ovf, ova)". */
  choices: string;
}

const MAX_DEPTH = 32;
const INT32 = { min: -(2 ** 31), max: 2 ** 31 - 1 };
const UINT32 = { min: 0, max: 2 ** 32 - 1 };
const INT64 = { min: -(2n ** 63n), max: 2n ** 63n - 1n };
const UINT64 = { min: 0n, max: 2n ** 64n - 1n };

/** Compiles the check of one request type; the plans of nested types are made once, on first use. */
export function createStrictJsonCheck(desc: DescMessage): StrictJsonCheck {
  /** A message's fields by JSON name and by proto name: protobuf JSON accepts both. */
  const messages = new Map<string, Map<string, DescField>>();
  const enums = new Map<string, EnumPlan>();
  const fieldsOf = (d: DescMessage) => {
    let fields = messages.get(d.typeName);
    if (!fields) {
      fields = new Map(d.fields.flatMap((f) => [[f.jsonName, f], [f.name, f]] as [string, DescField][]));
      messages.set(d.typeName, fields);
    }
    return fields;
  };
  const enumPlan = (d: DescEnum) => {
    let plan = enums.get(d.typeName);
    if (!plan) {
      plan = compileEnum(d);
      enums.set(d.typeName, plan);
    }
    return plan;
  };

  const checkMessage = (d: DescMessage, value: Json, path: string, depth: number): Json => {
    if (value === null) return value;
    if (depth > MAX_DEPTH) throw new InvalidArgumentError(path || "request", `nested deeper than ${MAX_DEPTH} messages`);
    const wkt = checkWellKnown(d, value, path);
    if (wkt !== undefined) return wkt;
    if (typeof value !== "object" || Array.isArray(value)) throw expected(path || "request", "a JSON object", value);
    const fields = fieldsOf(d);
    let out: Record<string, Json> | undefined;
    for (const [key, item] of Object.entries(value)) {
      const field = fields.get(key);
      if (!field) throw new InvalidArgumentError(join(path, key.length > 64 ? quoteInput(key) : key), "unknown field");
      const checked = checkField(field, item, join(path, field.name), depth);
      if (checked !== item) (out ??= { ...value })[key] = checked;
    }
    return out ?? value;
  };

  const checkField = (field: DescField, value: Json, path: string, depth: number): Json => {
    if (value === null) return value;
    switch (field.fieldKind) {
      case "scalar":
        checkScalar(field.scalar, value, path);
        return value;
      case "enum":
        return checkEnum(enumPlan(field.enum), value, path);
      case "message":
        return checkMessage(field.message, value, path, depth + 1);
      case "list": {
        if (!Array.isArray(value)) throw expected(path, "a JSON array", value);
        let out: Json[] | undefined;
        value.forEach((item, i) => {
          const at = `${path}[${i}]`;
          if (item === null) throw new InvalidArgumentError(at, "null is not allowed in a list");
          const checked = field.listKind === "scalar" ? (checkScalar(field.scalar, item, at), item)
            : field.listKind === "enum" ? checkEnum(enumPlan(field.enum), item, at)
              : checkMessage(field.message, item, at, depth + 1);
          if (checked !== item) (out ??= [...value])[i] = checked;
        });
        return out ?? value;
      }
      case "map": {
        if (typeof value !== "object" || Array.isArray(value)) throw expected(path, "a JSON object", value);
        let out: Record<string, Json> | undefined;
        for (const [key, item] of Object.entries(value)) {
          const at = `${path}[${quoteInput(key)}]`;
          checkMapKey(field.mapKey, key, at);
          if (item === null) throw new InvalidArgumentError(at, "null is not allowed in a map");
          const checked = field.mapKind === "scalar" ? (checkScalar(field.scalar, item, at), item)
            : field.mapKind === "enum" ? checkEnum(enumPlan(field.enum), item, at)
              : checkMessage(field.message, item, at, depth + 1);
          if (checked !== item) (out ??= { ...value })[key] = checked;
        }
        return out ?? value;
      }
    }
  };

  return (value) => checkMessage(desc, value as Json, "", 0);
}

function join(path: string, name: string): string {
  return path ? `${path}.${name}` : name;
}

function compileEnum(d: DescEnum): EnumPlan {
  const prefix = sharedPrefix(d.values.map((v) => v.name));
  const names = new Map<string, string>();
  for (const v of d.values) {
    names.set(v.name.toUpperCase(), v.name);
    if (prefix) names.set(v.name.slice(prefix.length).toUpperCase(), v.name);
  }
  const listed = d.values.filter((v) => v.number !== 0);
  const short = prefix ? ` (or ${listed.map((v) => v.name.slice(prefix.length).toLowerCase()).join(", ")})` : "";
  return { names, choices: `${listed.map((v) => v.name).join(", ")}${short}` };
}

/** "EXPORT_FORMAT_" of EXPORT_FORMAT_UNSPECIFIED, EXPORT_FORMAT_OVF, ...: up to the last "_" all names share. */
function sharedPrefix(names: readonly string[]): string {
  if (names.length < 2) return "";
  let prefix = names[0]!;
  for (const name of names) while (!name.startsWith(prefix)) prefix = prefix.slice(0, -1);
  return prefix.slice(0, prefix.lastIndexOf("_") + 1);
}

function checkEnum(plan: EnumPlan, value: Json, path: string): Json {
  // A number is taken as protobuf takes it (an open enum keeps unknown numbers), as on the gRPC port:
  // the handler refuses what it cannot use, with the same message on both ports.
  if (typeof value === "number") return (checkInt32(value, INT32, path), value);
  if (typeof value !== "string") throw expected(path, `one of ${plan.choices}`, value);
  const name = value.length <= 64 ? plan.names.get(value.trim().toUpperCase()) : undefined;
  if (name === undefined) throw new InvalidArgumentError(path, `${quoteInput(value)} is not one of ${plan.choices}`);
  return name;
}

function checkScalar(type: ScalarType, value: Json, path: string): void {
  switch (type) {
    case ScalarType.STRING:
      if (typeof value !== "string") throw expected(path, "a string", value);
      return;
    case ScalarType.BOOL:
      if (typeof value !== "boolean") throw expected(path, "true or false", value);
      return;
    case ScalarType.BYTES:
      if (typeof value !== "string" || !/^[A-Za-z0-9+/_-]*={0,2}$/.test(value)) throw expected(path, "base64 text", value);
      return;
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      if (typeof value === "number" || value === "NaN" || value === "Infinity" || value === "-Infinity") return;
      if (typeof value === "string" && value.trim() === value && value !== "" && Number.isFinite(Number(value))) return;
      throw expected(path, "a number", value);
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return checkInt32(value, INT32, path);
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return checkInt32(value, UINT32, path);
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return checkInt64(value, INT64, path);
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return checkInt64(value, UINT64, path);
  }
}

function checkInt32(value: Json, range: { min: number; max: number }, path: string): void {
  const n = typeof value === "number" ? value : typeof value === "string" && value !== "" && value.trim() === value ? Number(value) : NaN;
  if (!Number.isInteger(n) || n < range.min || n > range.max) throw expected(path, `an integer from ${range.min} to ${range.max}`, value);
}

function checkInt64(value: Json, range: { min: bigint; max: bigint }, path: string): void {
  let n: bigint | undefined;
  if (typeof value === "number" && Number.isInteger(value)) n = BigInt(value);
  else if (typeof value === "string" && /^-?[0-9]{1,20}$/.test(value)) n = BigInt(value);
  if (n === undefined || n < range.min || n > range.max) throw expected(path, `an integer from ${range.min} to ${range.max}`, value);
}

function checkMapKey(type: ScalarType, key: string, path: string): void {
  if (type === ScalarType.STRING) return;
  if (type === ScalarType.BOOL) {
    if (key !== "true" && key !== "false") throw expected(path, "a key true or false", key);
    return;
  }
  checkScalar(type, key, path);
}

/**
 * The JSON forms of the well-known types used in requests: returns the value when `d` is one of them
 * (after checking its JSON type), undefined for any other message.
 */
function checkWellKnown(d: DescMessage, value: Json, path: string): Json | undefined {
  switch (d.typeName) {
    case "google.protobuf.Timestamp":
      if (typeof value !== "string" || value.length > 40) throw expected(path, 'an RFC 3339 time such as "2026-01-31T02:00:00Z"', value);
      return value;
    case "google.protobuf.Duration":
      if (typeof value !== "string" || !/^-?[0-9]{1,12}(\.[0-9]{1,9})?s$/.test(value)) throw expected(path, 'a duration in seconds such as "10s" or "1.5s"', value);
      return value;
    case "google.protobuf.FieldMask":
      if (typeof value !== "string" || value.length > 2048) throw expected(path, 'field paths separated by commas, e.g. "cron,enabled"', value);
      return value;
    case "google.protobuf.BoolValue":
    case "google.protobuf.Int32Value":
    case "google.protobuf.UInt32Value":
    case "google.protobuf.Int64Value":
    case "google.protobuf.UInt64Value":
    case "google.protobuf.DoubleValue":
    case "google.protobuf.FloatValue":
    case "google.protobuf.StringValue":
    case "google.protobuf.BytesValue":
      checkScalar(d.fields[0]!.scalar!, value, path);
      return value;
    case "google.protobuf.Any":
    case "google.protobuf.Struct":
    case "google.protobuf.Value":
    case "google.protobuf.ListValue":
      // Free-form JSON by definition: protobuf-es checks what it can.
      return value;
    default:
      return undefined;
  }
}

function expected(path: string, what: string, value: Json): InvalidArgumentError {
  return new InvalidArgumentError(path, `expected ${what}, got ${describe(value)}`);
}

function describe(value: Json): string {
  if (typeof value === "string") return quoteInput(value);
  if (Array.isArray(value)) return "an array";
  if (value !== null && typeof value === "object") return "an object";
  return String(value);
}
