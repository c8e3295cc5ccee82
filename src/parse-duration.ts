/*
 * Durations as written in the config file and its records ("10s"): below every folder, so that the API's
 * reading of configured webhooks does not import config (which imports every layer's options).
 */

const UNITS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** "250ms", "10s", "5m", "1h", or a plain number of seconds. */
export function parseDurationMs(raw: unknown): number {
  if (typeof raw === "number" && Number.isFinite(raw) && raw >= 0) return Math.round(raw * 1000);
  const match = typeof raw === "string" ? /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(raw) : null;
  if (!match) throw new Error(`expected a duration such as 500ms, 10s or 5m, got ${raw === undefined ? "nothing" : JSON.stringify(raw)}`);
  return Math.round(Number(match[1]) * UNITS_MS[match[2] ?? "s"]!);
}
