import type { ListenAddress } from "../listen-address.ts";
import { parseDurationMs } from "../parse-duration.ts";
import type { Setting } from "./settings.ts";

export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"];

/** Parses one setting's raw value (a string from a flag or the environment, or a YAML value); throws a message naming what is wrong. */
export function parseValue(setting: Setting, raw: unknown): unknown {
  switch (setting.type) {
    case "string":
      if (typeof raw !== "string") throw new Error(`expected a string, got ${describe(raw)}`);
      return raw;
    case "int":
      return checkRange(setting, parseInteger(raw));
    case "duration":
      return checkRange(setting, parseDurationMs(raw));
    case "bool":
      if (typeof raw === "boolean") return raw;
      if (typeof raw === "string" && /^(true|1|yes|on)$/i.test(raw)) return true;
      if (typeof raw === "string" && /^(false|0|no|off)$/i.test(raw)) return false;
      throw new Error(`expected true or false, got ${describe(raw)}`);
    case "list":
      if (Array.isArray(raw) && raw.every((x) => typeof x === "string")) return raw;
      if (typeof raw === "string") return raw.split(",").map((s) => s.trim()).filter(Boolean);
      throw new Error(`expected a list of strings, got ${describe(raw)}`);
    case "address":
      // An empty optional address (metrics_listen: "") means none; a required one has a default.
      return raw === "" && setting.default === undefined ? undefined : parseListenAddress(raw);
    case "level":
      if (typeof raw === "string" && LOG_LEVELS.includes(raw)) return raw;
      throw new Error(`expected one of ${LOG_LEVELS.join(", ")}, got ${describe(raw)}`);
    case "records":
      // Each record is checked where it is used (webhooks, profiles), with its own field names.
      if (raw === null) return [];
      if (Array.isArray(raw) && raw.every((x) => x && typeof x === "object" && !Array.isArray(x))) return raw;
      throw new Error(`expected a list of mappings, got ${describe(raw)}`);
    case "map":
      if (raw === null) return {};
      if (typeof raw === "object" && !Array.isArray(raw) && Object.values(raw).every((x) => x === null || (typeof x === "object" && !Array.isArray(x)))) return raw;
      throw new Error(`expected a mapping of names to mappings, got ${describe(raw)}`);
  }
}

function parseInteger(raw: unknown): number {
  const n = typeof raw === "number" ? raw : typeof raw === "string" && /^-?\d+$/.test(raw.trim()) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(n)) throw new Error(`expected an integer, got ${describe(raw)}`);
  return n;
}

export function parseListenAddress(raw: unknown): ListenAddress {
  const match = typeof raw === "string" ? /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(raw.trim()) : null;
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65_535) throw new Error(`expected host:port (e.g. 127.0.0.1:8080, [::1]:0), got ${describe(raw)}`);
  return { host: match[1] ?? (match[2] || "0.0.0.0"), port };
}

function checkRange(setting: Setting, n: number): number {
  if (setting.min !== undefined && n < setting.min) throw new Error(`must be at least ${setting.min}, got ${n}`);
  if (setting.max !== undefined && n > setting.max) throw new Error(`must be at most ${setting.max}, got ${n}`);
  return n;
}

function describe(raw: unknown): string {
  return raw === undefined ? "nothing" : JSON.stringify(raw);
}
