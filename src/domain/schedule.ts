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
  /** Successful exports kept per VM (older ones are deleted once a newer one has completed); 0 keeps all. */
  keepLast: number;
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
  /** Unset when the run was skipped or created a batch. */
  jobId?: string;
  /** Set when the template selects VMs (vm_selector): the run's batch. */
  batchId?: string;
  trigger: RunTrigger;
  /** When the run was due. */
  scheduledTime: number;
  /** When it happened (job created, or skipped). */
  runTime: number;
  /**
   * From the job: its state now, and its run time once finished. A batch's run: running while any child
   * is queued or running, then completed, cancelled, or failed (a partially failed batch is failed).
   */
  state?: JobState;
  durationSeconds?: number;
  skippedReason?: string;
}

/** keep_last's bounds (0 keeps every export). */
export const MAX_KEEP_LAST = 10_000;

/** A directory a schedule's run wrote for one VM: what retention may delete, and nothing else. */
export interface ScheduleExport {
  scheduleId: string;
  /** The VM's directory name under the template's output_dir. */
  vmKey: string;
  jobId: string;
  /** <output_dir>/<vm key>/<run stamp>, absolute. */
  dir: string;
  /** The run's scheduled time. */
  runTime: number;
  completedTime?: number;
  deletedTime?: number;
}
