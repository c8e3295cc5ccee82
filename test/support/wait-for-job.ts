import { JobState, type Job } from "../../gen/hypervisord/v1/job_pb.js";
import type { GrpcJsClient } from "./clients.ts";
import type { HypervisordClient } from "../../clients/node/index.ts";

const FINAL = [JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED];

export interface WaitForJobOptions {
  /** What is awaited, for the failure message (default: the predicate holding). */
  what?: string;
  timeoutMs?: number;
}

/**
 * Polls GetJob until `until` holds, and returns the job. Fails after the timeout, or as soon as the job is
 * FAILED or CANCELLED without `until` holding (such a job will not change), saying where the job stands.
 * A COMPLETED job is still polled: its pending cleanup may yet change.
 */
export async function waitForJob(client: GrpcJsClient, jobId: string, until: (job: Job) => boolean, options: WaitForJobOptions = {}): Promise<Job> {
  const { what = "its condition", timeoutMs = 30_000 } = options;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const job = (await client.unary("getJob", { jobId })).job!;
    if (until(job)) return job;
    const ended = job.state === JobState.FAILED || job.state === JobState.CANCELLED;
    if (ended || Date.now() > deadline) {
      const where = `${JobState[job.state]} (${job.progress?.phase}), ${job.progress?.bytesDone} bytes${job.error?.message ? `, ${job.error.message}` : ""}`;
      throw new Error(`job ${jobId}: ${ended ? "ended" : `timed out after ${timeoutMs} ms`} waiting for ${what}; it is ${where}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

export const isFinal = (job: Job) => FINAL.includes(job.state);
export const hasBytes = (atLeast: number) => (job: Job) => Number(job.progress?.bytesDone ?? 0) > atLeast;

/** Polls GetJob through a Connect client (the dashboard tests' own) until the job is in `state`, and returns it. */
export async function waitForJobState(client: Pick<HypervisordClient, "getJob">, jobId: string, state: JobState, timeoutMs = 30_000): Promise<Job> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { job } = await client.getJob({ jobId });
    if (job!.state === state) return job!;
    if (Date.now() > deadline) throw new Error(`job ${jobId} is ${JobState[job!.state]}, not ${JobState[state]}, after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
