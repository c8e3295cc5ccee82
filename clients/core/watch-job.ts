import type { Client } from "@connectrpc/connect";
import { JobState, type Job } from "../../gen/hypervisord/v1/job_pb.js";
import type { HypervisordService, StreamJobUpdatesResponse } from "../../gen/hypervisord/v1/service_pb.js";
import { followUpdates, type FollowOptions } from "./follow-updates.ts";

export { isDroppedStream } from "./follow-updates.ts";

export interface WatchJobOptions extends FollowOptions {
  /** Every update of the job as it arrives (snapshot, state changes, progress), and the SYNCED marker. */
  onUpdate?: (update: StreamJobUpdatesResponse) => void;
}

const TERMINAL: ReadonlySet<JobState> = new Set([JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED]);

export function isTerminal(state: JobState): boolean {
  return TERMINAL.has(state);
}

/**
 * Follows one job over StreamJobUpdates until it reaches COMPLETED, FAILED or CANCELLED and
 * resolves with that final Job. A dropped stream is reopened with `after_seq` = the last seq
 * seen, so the daemon replays every state change missed meanwhile (also across a daemon restart).
 * Rejects with the call's error for anything else (NOT_FOUND for an unknown job, ...).
 */
export async function watchJob(client: Client<typeof HypervisordService>, jobId: string, options: WatchJobOptions = {}): Promise<Job> {
  const { signal, onUpdate } = options;
  return followUpdates(client, { jobIds: [jobId] }, { kind: "job", id: jobId }, options, async (update) => {
    onUpdate?.(update);
    if (update.jobId !== jobId || !isTerminal(update.state)) return undefined;
    return update.job ?? (await client.getJob({ jobId }, { signal })).job!;
  });
}
