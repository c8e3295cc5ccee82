import { FailedPreconditionError } from "../../errors.ts";
import { isSealed, type SecretBox } from "../secret-box.ts";
import { EMPTY_PROGRESS, PRIORITY_RANK, type Job, type JobDefinition, type JobState, type JobTransition } from "../../domain/job.ts";

/** A row of the jobs table as better-sqlite3 returns it. */
export interface JobRow {
  pk: number;
  id: string;
  request_id: string | null;
  name: string;
  provider: string;
  state: string;
  priority: number;
  definition: string;
  secrets: string | null;
  progress: string | null;
  result: string | null;
  error: string | null;
  attempt: number;
  max_attempts: number;
  resume: number;
  schedule_id: string | null;
  create_time: number;
  start_time: number | null;
  end_time: number | null;
  next_attempt_time: number | null;
}

export interface TransitionRow {
  seq: number;
  job_id: string;
  from_state: string | null;
  to_state: string;
  reason: string;
  actor: string;
  time: number;
}

/** Secrets live in their own column so that they can be encrypted, or dropped, without touching the definition. */
interface Secrets {
  vsphere_password?: string;
}

/**
 * The definition without its password, and the secrets column: JSON, sealed by `box` when one is
 * configured (secrets.encryption_key), else plain as before encryption existed.
 */
export function splitSecrets(definition: JobDefinition, box?: SecretBox): { definition: string; secrets: string | null } {
  const password = definition.vsphere?.password;
  const stored = definition.vsphere ? { ...definition, vsphere: { ...definition.vsphere, password: "" } } : definition;
  const secrets: Secrets | null = password ? { vsphere_password: password } : null;
  const json = secrets && JSON.stringify(secrets);
  return { definition: JSON.stringify(stored), secrets: json && box ? box.seal(json) : json };
}

/** The inverse of splitSecrets: puts the stored password back into a definition read from a row. */
export function joinSecrets(definition: JobDefinition, secrets: string | null, box?: SecretBox): JobDefinition {
  if (secrets && definition.vsphere) {
    const parsed = JSON.parse(openSecrets(secrets, box)) as Secrets;
    definition.vsphere.password = parsed.vsphere_password ?? "";
  }
  return definition;
}

/** Plain values (written before encryption was configured) still read; sealed ones need the box. */
function openSecrets(stored: string, box: SecretBox | undefined): string {
  if (!isSealed(stored)) return stored;
  if (!box) throw new FailedPreconditionError("stored passwords are encrypted: set secrets.encryption_key (HYPERVISORD_ENCRYPTION_KEY) to the key they were written with");
  return box.open(stored);
}

/** Rows to jobs, with `box` to open sealed secrets. */
export function jobRowReader(box?: SecretBox): (row: JobRow) => Job {
  return (row) => readJob(row, box);
}

/** Reads rows without a secret box: sealed secrets are refused. Kept until job-queries takes its reader from jobRowReader. */

function readJob(row: JobRow, box: SecretBox | undefined): Job {
  const definition = joinSecrets(JSON.parse(row.definition) as JobDefinition, row.secrets, box);
  return {
    id: row.id,
    definition,
    state: row.state as JobState,
    progress: row.progress ? JSON.parse(row.progress) : { ...EMPTY_PROGRESS },
    result: row.result ? JSON.parse(row.result) : undefined,
    error: row.error ? JSON.parse(row.error) : undefined,
    attempt: row.attempt,
    maxAttempts: row.max_attempts,
    createTime: row.create_time,
    startTime: row.start_time ?? undefined,
    endTime: row.end_time ?? undefined,
    nextAttemptTime: row.next_attempt_time ?? undefined,
    scheduleId: row.schedule_id ?? undefined,
  };
}

export function transitionFromRow(row: TransitionRow): JobTransition {
  return {
    seq: row.seq,
    jobId: row.job_id,
    fromState: (row.from_state as JobState | null) ?? undefined,
    toState: row.to_state as JobState,
    reason: row.reason,
    actor: row.actor,
    time: row.time,
  };
}

export function priorityRank(definition: JobDefinition): number {
  return PRIORITY_RANK[definition.priority];
}
