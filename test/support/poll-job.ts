import { JobState, type Job } from "../../gen/hypervisord/v1/job_pb.js";
import type { GrpcJsClient } from "./clients.ts";

const FINAL = [JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED];

/** Polls GetJob until `until` holds; fails after `timeoutMs`, saying where the job stands. */
export async function pollJob(client: GrpcJsClient, jobId: string, until: (job: Job) => boolean, timeoutMs = 30_000): Promise<Job> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const job = (await client.unary("getJob", { jobId })).job!;
    if (until(job)) return job;
    if (Date.now() > deadline) throw new Error(`job ${jobId} is still ${JobState[job.state]}, ${job.progress?.bytesDone} bytes, after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export const isFinal = (job: Job) => FINAL.includes(job.state);
export const hasBytes = (atLeast: number) => (job: Job) => Number(job.progress?.bytesDone ?? 0) > atLeast;
