import pino, { type Logger } from "pino";
import { loggerOptions } from "../logging.ts";
import type { LogEntry, Store } from "../store/store.ts";

const NOT_FIELDS = new Set(["level", "time", "msg", "pid", "hostname", "job_id"]);

export interface JobLoggerOptions {
  store: Store;
  jobId: string;
  level: string;
  /** Also write every record here (the daemon's own log), tagged with job_id. */
  forward?: { write(line: string): unknown };
  onEntry(entry: LogEntry): void;
}

/**
 * A pino logger whose records are kept with the job (GetJobLogs) and also
 * written to the daemon log, in the daemon log's format and with its redaction.
 */
export function createJobLogger(options: JobLoggerOptions): Logger {
  const destination = {
    write(line: string) {
      options.forward?.write(line);
      const record = JSON.parse(line) as Record<string, unknown>;
      const fields: Record<string, unknown> = {};
      for (const [key, value] of Object.entries(record)) if (!NOT_FIELDS.has(key)) fields[key] = value;
      const entry = options.store.appendLog(options.jobId, {
        time: typeof record.time === "string" ? Date.parse(record.time) : Date.now(),
        level: String(record.level),
        message: typeof record.msg === "string" ? record.msg : "",
        fields,
      });
      options.onEntry(entry);
    },
  };
  return pino({ ...loggerOptions(options.level), base: { job_id: options.jobId } }, destination);
}
