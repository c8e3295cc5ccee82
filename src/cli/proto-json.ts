/** The proto JSON hyperctl prints for -o json and -o yaml: the daemon's Connect JSON, minus empty write-only secrets. */
import { ScalarType, toJson, type DescField, type DescMessage, type MessageShape } from "@bufbuild/protobuf";

/**
 * Fields the API never returns (proto comments say "Write-only"): always "" in responses, so printing
 * `"password": ""` only suggests that a password is missing. A set value is left as it is (the daemon
 * never sends one; the proto says where one is returned on purpose, e.g. CreateWebhookResponse.secret).
 */
const WRITE_ONLY = new Set(["hypervisord.v1.VSphereConnection.password", "hypervisord.v1.AzureConnection.client_secret", "hypervisord.v1.Webhook.secret"]);

const INT64 = new Set([ScalarType.INT64, ScalarType.UINT64, ScalarType.SINT64, ScalarType.FIXED64, ScalarType.SFIXED64]);

type JsonObject = Record<string, unknown>;

/** The proto JSON of a message as the daemon's Connect JSON writes it (zero values included, int64 as strings), without empty write-only fields. */
export function protoJson<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): unknown {
  const json = toJson(schema, message, { alwaysEmitImplicit: true });
  walk(schema, json, (field, object) => {
    if (WRITE_ONLY.has(`${field.parent.typeName}.${field.name}`) && object[field.jsonName] === "") delete object[field.jsonName];
  });
  return json;
}

/**
 * The same for YAML, where int64 values are numbers (proto JSON quotes them because JavaScript numbers
 * stop at 2^53; YAML has no such limit, so they are written as integers, as bigint where needed).
 */
export function protoYaml<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): unknown {
  const json = protoJson(schema, message);
  walk(schema, json, (field, object) => {
    if (!INT64.has(field.scalar as ScalarType)) return;
    const value = object[field.jsonName];
    if (field.fieldKind === "scalar") object[field.jsonName] = integer(value);
    else if (field.fieldKind === "list" && Array.isArray(value)) object[field.jsonName] = value.map(integer);
    else if (field.fieldKind === "map" && isObject(value)) for (const key of Object.keys(value)) value[key] = integer(value[key]);
  });
  return json;
}

function integer(value: unknown): unknown {
  if (typeof value !== "string" || !/^-?\d+$/.test(value)) return value;
  const n = Number(value);
  return Number.isSafeInteger(n) ? n : BigInt(value);
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Calls `visit` for every field of every message in `json` (a message of `schema`), depth first; well-known types are leaves. */
function walk(schema: DescMessage, json: unknown, visit: (field: DescField, object: JsonObject) => void): void {
  if (!isObject(json) || schema.typeName.startsWith("google.protobuf.")) return;
  for (const field of schema.fields) {
    const value = json[field.jsonName];
    if (value === undefined) continue;
    if (field.fieldKind === "message") walk(field.message, value, visit);
    else if (field.fieldKind === "list" && field.listKind === "message" && Array.isArray(value)) for (const item of value) walk(field.message, item, visit);
    else if (field.fieldKind === "map" && field.mapKind === "message" && isObject(value)) for (const item of Object.values(value)) walk(field.message, item, visit);
    visit(field, json);
  }
}
