/** Human formatting for tables: sizes, durations, rates, local timestamps, enum names. */
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

/** 1536 -> "1.5 KiB"; bigint (int64 fields) accepted. */
export function bytes(value: number | bigint): string {
  let n = Number(value);
  let unit = 0;
  while (Math.abs(n) >= 1024 && unit < UNITS.length - 1) {
    n /= 1024;
    unit++;
  }
  return unit === 0 ? `${n} B` : `${n.toFixed(n < 10 ? 1 : 0)} ${UNITS[unit]}`;
}

/** Bytes per second as MiB/s, the unit people compare disk and network speeds in. */
export function rate(bytesPerSecond: number): string {
  return `${(bytesPerSecond / 1024 ** 2).toFixed(1)} MiB/s`;
}

/** 3.2 -> "3.2s", 125 -> "2m05s", 7384 -> "2h03m04s". */
export function duration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "-";
  if (seconds < 60) return `${seconds < 10 ? seconds.toFixed(1) : Math.round(seconds)}s`;
  const total = Math.round(seconds);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h > 0 ? `${h}h${String(m).padStart(2, "0")}m${s}s` : `${m}m${s}s`;
}

/** ETA as m:ss or h:mm:ss. */
export function clock(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "--:--";
  const total = Math.round(seconds);
  const h = Math.floor(total / 3600);
  const mm = String(Math.floor((total % 3600) / 60)).padStart(h > 0 ? 2 : 1, "0");
  const ss = String(total % 60).padStart(2, "0");
  return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

/** ISO 8601 in the local time zone with its offset, one word for line output (watch, logs): 2026-01-02T15:04:05+01:00. */
export function localIso(date: Date): string {
  const pad = (n: number, width = 2) => String(Math.abs(n)).padStart(width, "0");
  const offset = -date.getTimezoneOffset();
  const zone = offset === 0 ? "Z" : `${offset > 0 ? "+" : "-"}${pad(Math.trunc(offset / 60))}:${pad(offset % 60)}`;
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}${zone}`;
}

/**
 * A table's time: local zone (TZ respected) with its offset, to the second: "2026-12-02 14:03:11 +01:00".
 * The offset is always printed (never "Z"), so that a reader sees which zone a time is in.
 */
export function localTime(date: Date): string {
  const pad = (n: number) => String(Math.abs(n)).padStart(2, "0");
  const offset = -date.getTimezoneOffset();
  const zone = `${offset >= 0 ? "+" : "-"}${pad(Math.trunc(offset / 60))}:${pad(offset % 60)}`;
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())} ${zone}`;
}

/** A Timestamp for tables (see localTime); "-" when unset. */
export function time(ts: Timestamp | undefined): string {
  return ts ? localTime(timestampDate(ts)) : "-";
}

/** Seconds between two timestamps (the second defaults to now). */
export function secondsBetween(start: Timestamp | undefined, end?: Timestamp): number | undefined {
  if (!start) return undefined;
  return ((end ? timestampDate(end) : new Date()).getTime() - timestampDate(start).getTime()) / 1000;
}

/** An enum value's short name: JobState.RUNNING with prefix "JOB_STATE_" -> "running". */
export function enumName(enumObject: Record<number, string>, value: number): string {
  return (enumObject[value] ?? String(value)).toLowerCase().replace(/_/g, "-");
}

export function orDash(value: string | undefined): string {
  return value === undefined || value === "" ? "-" : value;
}
