import type { SecretBox } from "../secret-box.ts";
import { EMPTY_PROGRESS, PRIORITY_RANK, redactDefinition, type Job, type JobAttempt, type JobDefinition, type JobState, type JobTransition } from "../../domain/job.ts";

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
  batch_id: string | null;
  pending_cleanup: string | null;
  create_time: number;
  start_time: number | null;
  end_time: number | null;
  next_attempt_time: number | null;
  /** JSON JobAttempt[] */
  attempts: string;
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
  /** A vsphere.url carrying credentials (https://user:password@host): the definition keeps it redacted. */
  vsphere_url?: string;
  /** An Azure service principal's client secret (definition.azure.clientSecret). */
  azure_client_secret?: string;
}

/** The definition without its secrets, and the secrets column: JSON sealed by `box`, or null when there is none. */
export function splitSecrets(definition: JobDefinition, box: SecretBox): { definition: string; secrets: string | null } {
  const { vsphere, azure } = definition;
  const stored = redactDefinition(definition);
  const secrets: Secrets = {};
  if (vsphere?.password) secrets.vsphere_password = vsphere.password;
  if (vsphere && stored.vsphere!.url !== vsphere.url) secrets.vsphere_url = vsphere.url;
  if (azure?.clientSecret) secrets.azure_client_secret = azure.clientSecret;
  return { definition: JSON.stringify(stored), secrets: Object.keys(secrets).length > 0 ? box.seal(JSON.stringify(secrets)) : null };
}

/** The inverse of splitSecrets: puts the stored secrets back into a definition read from a row. */
export function joinSecrets(definition: JobDefinition, secrets: string | null, box: SecretBox): JobDefinition {
  if (secrets && (definition.vsphere || definition.azure)) {
    const parsed = JSON.parse(box.open(secrets)) as Secrets;
    if (definition.vsphere) {
      definition.vsphere.password = parsed.vsphere_password ?? "";
      if (parsed.vsphere_url) definition.vsphere.url = parsed.vsphere_url;
    }
    if (definition.azure) definition.azure.clientSecret = parsed.azure_client_secret ?? "";
  }
  return definition;
}

/** Rows to jobs, with `box` to open their secrets. */
export function jobRowReader(box: SecretBox): (row: JobRow) => Job {
  return (row) => readJob(row, box);
}

function readJob(row: JobRow, box: SecretBox): Job {
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
    ...(row.batch_id ? { batchId: row.batch_id } : {}),
    ...(row.pending_cleanup ? { pendingCleanup: row.pending_cleanup } : {}),
    attempts: JSON.parse(row.attempts) as JobAttempt[],
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
