// How numbers, times and enums read on the page.
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { JobState } from "../index.ts";

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

export function formatBytes(value: bigint | number | undefined): string {
  let n = Number(value ?? 0);
  let unit = 0;
  while (Math.abs(n) >= 1024 && unit < UNITS.length - 1) {
    n /= 1024;
    unit++;
  }
  return unit === 0 ? `${n} B` : `${n.toFixed(n < 10 ? 2 : 1)} ${UNITS[unit]}`;
}

/** "12.3 MiB/s": one decimal at every size (a rate moves too much for more to be read). */
export function formatRate(bytesPerSecond: number | undefined): string {
  if (!bytesPerSecond) return "–";
  let n = bytesPerSecond;
  let unit = 0;
  while (Math.abs(n) >= 1024 && unit < UNITS.length - 1) {
    n /= 1024;
    unit++;
  }
  return `${unit === 0 ? Math.round(n) : n.toFixed(1)} ${UNITS[unit]}/s`;
}

/** "42%": whole percents, rounded down so that 99.6% of a running job does not read as done. */
export function formatPercent(percent: number): string {
  return `${Math.floor(Math.max(0, Math.min(100, percent)))}%`;
}

export function formatDuration(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return "–";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = s % 60;
  if (h > 0) return `${h} h ${m} min`;
  if (m > 0) return `${m} min ${rest} s`;
  return `${rest} s`;
}

export function toDate(ts: Timestamp | undefined): Date | undefined {
  return ts && (ts.seconds !== 0n || ts.nanos !== 0) ? timestampDate(ts) : undefined;
}

/**
 * Date and time in the reader's locale, with the time zone named ("02/12/2026, 13:47:48 CET"): a time
 * without its zone misleads when the daemon, the schedule and the reader are in different ones.
 * `locale` and `timeZone` default to the browser's; tests pass them.
 */
export function createDateFormat(locale?: string, timeZone?: string): Intl.DateTimeFormat {
  return new Intl.DateTimeFormat(locale, {
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short", timeZone,
  });
}

/** Time of day only, for log lines (the full date is in their tooltip). */
export function createClockFormat(locale?: string, timeZone?: string): Intl.DateTimeFormat {
  return new Intl.DateTimeFormat(locale, { hour: "2-digit", minute: "2-digit", second: "2-digit", timeZone });
}

const dateFormat = createDateFormat();
const clockFormat = createClockFormat();

export function formatDate(date: Date | undefined): string {
  return date ? dateFormat.format(date) : "–";
}

export function formatClock(date: Date | undefined): string {
  return date ? clockFormat.format(date) : "–";
}

export function formatTime(ts: Timestamp | undefined): string {
  return formatDate(toDate(ts));
}

/** Seconds between two timestamps, or from `start` to now while `end` is unset. */
export function elapsedSeconds(start: Timestamp | undefined, end: Timestamp | undefined): number | undefined {
  const from = toDate(start);
  if (!from) return undefined;
  return ((toDate(end) ?? new Date()).getTime() - from.getTime()) / 1000;
}

export const STATES: readonly JobState[] = [JobState.QUEUED, JobState.RUNNING, JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED];

/** "queued", "running", ... as the API's enum names them, lower case. */
export function stateName(state: JobState): string {
  return (JobState[state] ?? "unknown").toLowerCase();
}

/** "INVALID_ARGUMENT: definition.vm: must not be empty": the gRPC code name, then the daemon's message (which names the field). */
export function describeError(error: unknown): string {
  if (isNetworkError(error)) return "UNAVAILABLE: the daemon cannot be reached (network error)";
  if (error instanceof ConnectError) {
    const code = Code[error.code].replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
    return `${code}: ${error.rawMessage}`;
  }
  return error instanceof Error ? error.message : String(error);
}

/** fetch() itself failed (connection refused, reset, offline): connect-web reports it as UNKNOWN with the TypeError as cause. */
export function isNetworkError(error: unknown): boolean {
  return error instanceof ConnectError && (error.code === Code.Unavailable || (error.code === Code.Unknown && error.cause instanceof TypeError));
}

/** "team=web, tier=1" from a labels map. */
export function formatLabels(labels: Record<string, string>): string {
  return Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(", ");
}

/** Parses "team=web, tier=1" (commas or new lines); throws naming the bad entry. */
export function parseLabels(text: string, field: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const part of text.split(/[,\n]/).map((p) => p.trim()).filter(Boolean)) {
    const eq = part.indexOf("=");
    if (eq <= 0) throw new Error(`${field}: "${part}" is not key=value`);
    labels[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  return labels;
}
