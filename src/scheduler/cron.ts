import { Cron } from "croner";
import { InvalidArgumentError, errorMessage } from "../errors.ts";

/** A validated cron expression in a time zone. Times are milliseconds since the epoch. */
export interface ParsedCron {
  readonly expression: string;
  /** The canonical IANA name ("UTC" for ""), e.g. "Europe/Berlin" for "europe/berlin". */
  readonly timeZone: string;
  /** The first time strictly after `after`; undefined when the expression fires no more. */
  next(after: number): number | undefined;
}

/** Request field names, for errors (e.g. `schedule.cron`, `schedule.time_zone`). */
export interface CronFields {
  cron: string;
  timeZone: string;
}

/**
 * Validates a schedule's cron expression and time zone.
 *
 * Accepted: 5 fields (minute hour day-of-month month day-of-week), 6 with
 * seconds first, and croner's nicknames (@yearly, @annually, @monthly,
 * @weekly, @daily, @midnight, @hourly). Refused: croner's 7-field form with a
 * year (the API documents 5 or 6 fields), @reboot (croner refuses it), and
 * expressions that never fire (e.g. "0 0 30 2 *").
 *
 * Semantics are Vixie cron's, as croner implements them by default and we pin:
 * - day-of-month and day-of-week are ORed when both are restricted
 *   ("0 20 1 * MON" fires on the 1st and on Mondays); croner's "+" prefix
 *   ("+MON") asks for AND;
 * - DST: a fixed-time job (one value each in seconds, minutes and hours, e.g.
 *   "0 30 2 * * *") whose time falls in the spring-forward gap runs at the
 *   first valid time after the gap (03:00 that day), and runs once, at the first
 *   occurrence, when its time occurs twice in autumn. Interval jobs (a wildcard,
 *   step, list or range) skip times in the gap and run on both occurrences of a
 *   repeated time.
 */
export function parseCron(cron: string, timeZone: string, fields: CronFields): ParsedCron {
  const zone = canonicalTimeZone(timeZone, fields.timeZone);
  const expression = cron.trim();
  checkFieldCount(expression, fields.cron);
  let pattern: Cron;
  try {
    pattern = new Cron(expression, { paused: true, timezone: zone, mode: "5-or-6-parts", domAndDow: false });
  } catch (error) {
    throw new InvalidArgumentError(fields.cron, `invalid cron expression "${cron}": ${cronMessage(error)}`);
  }
  // Without a year field every expression repeats, so one that never matches from the epoch never fires.
  if (pattern.nextRun(new Date(0)) === null) {
    throw new InvalidArgumentError(fields.cron, `cron expression "${cron}" never fires`);
  }
  return {
    expression,
    timeZone: zone,
    // croner works in whole seconds and returns a time strictly after the one given (1000 -> 2000, 1999 -> 2000).
    next: (after) => pattern.nextRun(new Date(after))?.getTime(),
  };
}

/** The IANA zone as the runtime's ICU knows it; "" is UTC. */
function canonicalTimeZone(timeZone: string, field: string): string {
  if (timeZone === "") return "UTC";
  try {
    return new Intl.DateTimeFormat("en-US", { timeZone }).resolvedOptions().timeZone;
  } catch {
    // Intl throws a RangeError for any zone it does not know; the message below says which.
    throw new InvalidArgumentError(field, `unknown IANA time zone "${timeZone}"`);
  }
}

function checkFieldCount(expression: string, field: string): void {
  if (expression.startsWith("@")) return;
  const count = expression === "" ? 0 : expression.split(/\s+/).length;
  if (count !== 5 && count !== 6) {
    throw new InvalidArgumentError(field,
      `invalid cron expression "${expression}": expected 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first, got ${count}`);
  }
}

function cronMessage(error: unknown): string {
  return errorMessage(error).replace(/^CronPattern: /, "");
}
