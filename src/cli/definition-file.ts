import fs from "node:fs";
import path from "node:path";
import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import YAML from "yaml";
import { JobDefinitionSchema, type JobDefinition } from "../../gen/hypervisord/v1/job_pb.js";
import { parseByteRate } from "./byte-rate.ts";
import { InputError } from "./errors.ts";

/** Reads a YAML or JSON file (JSON is YAML), naming the file in every error. */
export function readDataFile(file: string): unknown {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    throw new InputError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  try {
    return YAML.parse(text);
  } catch (err) {
    throw new InputError(`${file}: not valid ${path.extname(file) === ".json" ? "JSON" : "YAML"}: ${(err as Error).message.split("\n")[0]}`);
  }
}

/**
 * Shorthands people write for what the proto JSON wants: `format: ova` for the enum name, and
 * `bandwidth_limit: 100MiB/s` (as --bandwidth-limit takes it) for a number of bytes per second.
 */
function expandShorthands(value: unknown): unknown {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return value;
  const record = { ...(value as Record<string, unknown>) };
  if (typeof record.format === "string" && /^(ovf|ova)$/i.test(record.format)) record.format = `EXPORT_FORMAT_${record.format.toUpperCase()}`;
  for (const key of ["bandwidth_limit", "bandwidthLimit"]) {
    const rate = record[key];
    if (typeof rate !== "string") continue;
    try {
      record[key] = String(parseByteRate(rate));
    } catch (err) {
      throw new Error(`${key}: ${(err as Error).message}`);
    }
  }
  return record;
}

/** One JobDefinition from its proto JSON (snake_case or camelCase names); unknown fields are errors. */
export function jobDefinitionFromJson(value: unknown, where: string): JobDefinition {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new InputError(`${where}: expected a job definition (a mapping), got ${JSON.stringify(value)}`);
  try {
    return fromJson(JobDefinitionSchema, expandShorthands(value) as JsonValue);
  } catch (err) {
    throw new InputError(`${where}: ${(err as Error).message}`);
  }
}

/** A job file: one definition, a list of them, or `{jobs: [...]}`. */
export function readJobDefinitions(file: string): JobDefinition[] {
  const data = readDataFile(file);
  if (Array.isArray(data)) return data.map((item, i) => jobDefinitionFromJson(item, `${file}: [${i}]`));
  if (typeof data === "object" && data !== null && "jobs" in data) {
    const jobs = (data as { jobs: unknown }).jobs;
    if (!Array.isArray(jobs)) throw new InputError(`${file}: "jobs" must be a list`);
    return jobs.map((item, i) => jobDefinitionFromJson(item, `${file}: jobs[${i}]`));
  }
  return [jobDefinitionFromJson(data, file)];
}
