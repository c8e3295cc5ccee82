import type { JobDefinition, JobState } from "./job.ts";

export const OVERLAP_POLICIES = ["skip", "queue", "allow"] as const;
export type OverlapPolicy = (typeof OVERLAP_POLICIES)[number];

export const MISSED_RUN_POLICIES = ["skip", "run_once"] as const;
export type MissedRunPolicy = (typeof MISSED_RUN_POLICIES)[number];

export type RunTrigger = "cron" | "manual" | "missed";

export interface Schedule {
  id: string;
  name: string;
  description: string;
  /** 5 fields, or 6 with seconds first. */
  cron: string;
  /** IANA zone; "" is UTC. */
  timeZone: string;
  /** Validated like a SubmitJob definition (output_dir resolved); the password is stored apart, like a job's. */
  jobTemplate: JobDefinition;
  enabled: boolean;
  tags: Record<string, string>;
  overlapPolicy: OverlapPolicy;
  missedRunPolicy: MissedRunPolicy;
  /** Milliseconds since the epoch. */
  createTime: number;
  updateTime: number;
  /** Unset while disabled. */
  nextRunTime?: number;
  lastRunTime?: number;
  runCount: number;
}

export interface ScheduleRun {
  id: string;
  scheduleId: string;
  /** Unset when the run was skipped. */
  jobId?: string;
  trigger: RunTrigger;
  /** When the run was due. */
  scheduledTime: number;
  /** When it happened (job created, or skipped). */
  runTime: number;
  /** From the job: its state now, and its run time once finished. */
  state?: JobState;
  durationSeconds?: number;
  skippedReason?: string;
}
