// Recent failures grouped by what went wrong: one row per error code and message pattern (the message
// with its numbers, ids and quoted names blanked), so that twenty jobs failing on the same unreachable
// vCenter read as one line "20" rather than twenty identical red boxes.
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Job } from "../index.ts";

export interface FailureGroup {
  /** The gRPC code name ("NOT_FOUND"), or "UNKNOWN" for a failed job without an error. */
  code: string;
  /** The message with what varies between occurrences replaced by "…" or "#". */
  pattern: string;
  /** The newest occurrence's message, as it was. */
  message: string;
  count: number;
  /** When the newest occurrence ended (undefined when the daemon sent no end time). */
  lastSeen: Date | undefined;
  latest: Job;
}

/**
 * What is left of a message once the parts that differ between otherwise identical failures are
 * blanked: quoted text (VM names and paths are quoted in the daemon's messages), ids (UUIDs, long hex,
 * ULIDs) and numbers (attempt counts, byte offsets, disk-2 beside disk-1). The words stay.
 */
export function errorPattern(message: string): string {
  return message
    .replace(/"[^"]*"|'[^']*'|`[^`]*`/g, "“…”")
    .replace(/\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b/gi, "…")
    .replace(/\b(?=[0-9A-Z]*\d)[0-9A-HJKMNP-TV-Z]{26}\b/g, "…")
    .replace(/\b(?=[0-9a-f]*\d)[0-9a-f]{12,}\b/gi, "…")
    .replace(/\d+(?:\.\d+)?/g, "#")
    .replace(/\s+/g, " ")
    .trim();
}

/** Groups failed jobs (newest first, as ListJobs returns them) by code and pattern; the newest group first. */
export function groupFailures(jobs: readonly Job[]): FailureGroup[] {
  const groups = new Map<string, FailureGroup>();
  for (const job of jobs) {
    const code = job.error?.code || "UNKNOWN";
    const message = job.error?.message ?? "";
    const pattern = errorPattern(message);
    const key = `${code}\0${pattern}`;
    const ended = job.endTime ? timestampDate(job.endTime) : undefined;
    const group = groups.get(key);
    if (!group) {
      groups.set(key, { code, pattern, message, count: 1, lastSeen: ended, latest: job });
      continue;
    }
    group.count++;
    if (ended && (!group.lastSeen || ended > group.lastSeen)) Object.assign(group, { lastSeen: ended, latest: job, message });
  }
  return [...groups.values()].sort((a, b) => (b.lastSeen?.getTime() ?? 0) - (a.lastSeen?.getTime() ?? 0));
}
