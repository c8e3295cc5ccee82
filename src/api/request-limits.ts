import { ScalarType, type DescField, type DescMessage, type DescService } from "@bufbuild/protobuf";
import { InvalidArgumentError } from "../errors.ts";
import type { CallHook } from "../rpc/call-hooks.ts";

/**
 * Size limits of every string and repeated field of every request, by field name (the proto name: a
 * name means the same kind of value wherever it appears). Checked before any handler runs, on both
 * transports, so that no handler, store or error message ever sees an unbounded value. Handlers keep
 * their own, finer rules (characters allowed, exact ranges); these are the outer bounds.
 * A request field missing here stops the daemon at start (createRequestLimitsHook): a new field gets a
 * bound when it is added, not after someone has sent a megabyte in it.
 */
export const STRING_LIMITS: Readonly<Record<string, number>> = {
  // Identifiers (ids are UUIDs or "cfg-<name>"; request ids are the caller's).
  id: 128, job_id: 128, schedule_id: 128, webhook_id: 128, job_ids: 128, request_id: 256,
  // Names.
  name: 256, profile: 128, provider: 64, vm: 1024, name_pattern: 256, folder: 1024, method: 64, principal: 1024,
  // Free text.
  description: 2048, reason: 500, query: 200,
  // Paths (PATH_MAX) and URLs.
  output_dir: 4096, path: 4096, url: 2048,
  // Credentials.
  username: 256, password: 1024, thumbprint: 128, secret: 256,
  // AzureConnection (the handlers check the shapes; client secrets are ~40 characters, certificates' are not accepted).
  tenant_id: 256, client_id: 256, client_secret: 1024, subscription_id: 256, resource_group: 90, authority_host: 2048, resource_manager: 2048,
  // Short words from a fixed set; the handlers say which.
  convert_to: 32, priority: 32, running_vm_policy: 32, quiesce_policy: 32, name_glob: 256, batch_id: 128, batch_ids: 128, manifest_algorithm: 32, role: 32, remove_devices: 32, events: 64, source: 32, circuit_state: 32,
  cron: 128, time_zone: 64, page_token: 512,
  // google.protobuf.FieldMask.paths.
  paths: 64,
};

/** Items of repeated fields and entries of maps. */
export const COUNT_LIMITS: Readonly<Record<string, number>> = {
  definitions: 1000, job_ids: 1000, batch_ids: 1000, power_states: 8, states: 16, events: 32, remove_devices: 16, paths: 32,
  labels: 64, tags: 64, headers: 32,
};

/** Keys and values of string maps. */
export const MAP_LIMITS: Readonly<Record<string, { key: number; value: number }>> = {
  labels: { key: 63, value: 256 },
  tags: { key: 63, value: 256 },
  headers: { key: 256, value: 4096 },
};

/** Well-known types whose fields hold no strings (wrappers arrive unboxed as numbers and booleans). */
const NO_STRINGS = new Set([
  "google.protobuf.Timestamp", "google.protobuf.Duration", "google.protobuf.BoolValue", "google.protobuf.Int32Value",
  "google.protobuf.Int64Value", "google.protobuf.UInt32Value", "google.protobuf.UInt64Value", "google.protobuf.DoubleValue",
  "google.protobuf.FloatValue", "google.protobuf.Empty",
]);

type Check = (message: Record<string, unknown>, path: string) => void;

/** A call hook that refuses a request with a field over its limit (INVALID_ARGUMENT naming the field and the limit). */
export function createRequestLimitsHook(service: DescService): CallHook {
  const checks = new Map(service.methods.map((method) => [method.name, compileLimits(method.input)]));
  return {
    before(call) {
      checks.get(call.method)?.(call.request as Record<string, unknown>, "");
    },
  };
}

/** The check of one message type, compiled once from its descriptor; throws when a field has no limit. */
export function compileLimits(desc: DescMessage, compiled = new Map<string, Check>()): Check {
  const known = compiled.get(desc.typeName);
  if (known) return known;
  const fieldChecks: Check[] = [];
  // Registered before the fields are compiled, so that a recursive message type refers to itself.
  const check: Check = (message, path) => {
    for (const fieldCheck of fieldChecks) fieldCheck(message, path);
  };
  compiled.set(desc.typeName, check);
  if (!NO_STRINGS.has(desc.typeName)) {
    for (const field of desc.fields) {
      const fieldCheck = compileField(desc, field, compiled);
      if (fieldCheck) fieldChecks.push(fieldCheck);
    }
  }
  return check;
}

function compileField(desc: DescMessage, field: DescField, compiled: Map<string, Check>): Check | undefined {
  const name = field.name;
  const key = field.localName;
  const at = (path: string) => (path ? `${path}.${name}` : name);
  const limit = (table: Readonly<Record<string, number>>, what: string) => {
    const value = table[name];
    if (value === undefined) throw new Error(`request field ${desc.typeName}.${name} has no ${what} limit in src/api/request-limits.ts`);
    return value;
  };
  switch (field.fieldKind) {
    case "scalar": {
      if (field.scalar !== ScalarType.STRING && field.scalar !== ScalarType.BYTES) return undefined;
      const max = limit(STRING_LIMITS, "length");
      return (message, path) => checkLength(message[key] as string | Uint8Array, max, at(path));
    }
    case "enum":
      return undefined;
    case "message": {
      const inner = compileLimits(field.message, compiled);
      return (message, path) => {
        const value = message[key];
        if (value !== undefined && typeof value === "object" && value !== null) inner(value as Record<string, unknown>, at(path));
      };
    }
    case "list": {
      const maxItems = limit(COUNT_LIMITS, "count");
      const item = field.listKind === "message" ? compileLimits(field.message, compiled)
        : field.listKind === "scalar" && (field.scalar === ScalarType.STRING || field.scalar === ScalarType.BYTES) ? stringItem(limit(STRING_LIMITS, "length"))
          : undefined;
      return (message, path) => {
        const items = message[key] as unknown[];
        const where = at(path);
        if (items.length > maxItems) throw new InvalidArgumentError(where, `at most ${maxItems} items, got ${items.length}`);
        if (item) items.forEach((value, i) => item(value as Record<string, unknown>, `${where}[${i}]`));
      };
    }
    case "map": {
      const maxEntries = limit(COUNT_LIMITS, "count");
      const sizes = field.mapKey === ScalarType.STRING ? MAP_LIMITS[name] : undefined;
      if (field.mapKey === ScalarType.STRING && !sizes) throw new Error(`request field ${desc.typeName}.${name} has no key/value limits in src/api/request-limits.ts`);
      if (field.mapKind === "message") throw new Error(`request field ${desc.typeName}.${name}: maps of messages are not handled by src/api/request-limits.ts`);
      const stringValues = field.mapKind === "scalar" && field.scalar === ScalarType.STRING;
      return (message, path) => {
        const entries = Object.entries(message[key] as Record<string, unknown>);
        const where = at(path);
        if (entries.length > maxEntries) throw new InvalidArgumentError(where, `at most ${maxEntries} entries, got ${entries.length}`);
        if (!sizes) return;
        for (const [entryKey, value] of entries) {
          const keyChars = charsOver(entryKey, sizes.key);
          if (keyChars !== undefined) throw new InvalidArgumentError(where, `keys are at most ${sizes.key} characters, got one of ${keyChars}`);
          if (stringValues) checkLength(value as string, sizes.value, `${where}[${JSON.stringify(entryKey)}]`);
        }
      };
    }
  }
}

function stringItem(max: number): Check {
  return (value, path) => checkLength(value as unknown as string, max, path);
}

/** Refuses a string longer than `max` characters (code points), or bytes longer than `max` bytes; never echoes the value. */
function checkLength(value: string | Uint8Array, max: number, field: string): void {
  if (typeof value !== "string") {
    if (value.byteLength > max) throw new InvalidArgumentError(field, `at most ${max} bytes, got ${value.byteLength}`);
    return;
  }
  const chars = charsOver(value, max);
  if (chars !== undefined) throw new InvalidArgumentError(field, `at most ${max} characters, got ${chars}`);
}

/** The number of characters of `value` when over `max`, else undefined. */
function charsOver(value: string, max: number): number | undefined {
  // .length counts UTF-16 units, never fewer than the code points: only a long string needs counting.
  if (value.length <= max) return undefined;
  let chars = 0;
  for (let i = 0; i < value.length; i++) {
    const unit = value.charCodeAt(i);
    // A high surrogate followed by a low one is one character.
    if (unit >= 0xd800 && unit <= 0xdbff && i + 1 < value.length) {
      const next = value.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) i++;
    }
    chars++;
  }
  return chars > max ? chars : undefined;
}
