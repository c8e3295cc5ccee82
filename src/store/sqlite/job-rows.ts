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

export function splitSecrets(definition: JobDefinition): { definition: string; secrets: string | null } {
  const password = definition.vsphere?.password;
  const stored = definition.vsphere ? { ...definition, vsphere: { ...definition.vsphere, password: "" } } : definition;
  const secrets: Secrets | null = password ? { vsphere_password: password } : null;
  return { definition: JSON.stringify(stored), secrets: secrets && JSON.stringify(secrets) };
}

export function jobFromRow(row: JobRow): Job {
  const definition = JSON.parse(row.definition) as JobDefinition;
  if (row.secrets && definition.vsphere) {
    const secrets = JSON.parse(row.secrets) as Secrets;
    definition.vsphere.password = secrets.vsphere_password ?? "";
  }
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
