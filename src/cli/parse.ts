/** Parsers for option values; a bad value is a UsageError naming the option. */
import { InvalidArgumentError } from "commander";
import { UsageError } from "./errors.ts";

/** For repeatable options: `--label a=1 --label b=2`. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** k=v pairs into a map; an entry without "=" is refused. */
export function keyValuePairs(pairs: readonly string[] | undefined, option: string): Record<string, string> {
  const map: Record<string, string> = {};
  for (const pair of pairs ?? []) {
    const eq = pair.indexOf("=");
    if (eq <= 0) throw new UsageError(`${option} expects key=value, got "${pair}"`);
    map[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return map;
}

/** A commander argParser for integers within bounds. */
export function intOption(min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`expected an integer from ${min} to ${max}, got "${value}"`);
    return n;
  };
}

/** "on", "poweredOn", "powered-on" ... -> the proto's POWER_STATE_* suffix. */
export function choice<T>(choices: Record<string, T>, what: string) {
  return (value: string): T => {
    const key = value.toLowerCase().replace(/[-_]/g, "");
    const found = Object.entries(choices).find(([name]) => name.replace(/[-_]/g, "") === key);
    if (!found) throw new InvalidArgumentError(`${what} must be one of ${Object.keys(choices).join(", ")}, got "${value}"`);
    return found[1];
  };
}
