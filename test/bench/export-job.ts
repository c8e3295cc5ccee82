// A vsphere export job on the daemon over gRPC, for bench:export's rows: submitted, polled until it ends, and the
// disks it wrote.
import path from "node:path";
import { JobState, type Job } from "../../gen/hypervisord/v1/job_pb.js";
import type { GrpcJsClient } from "../support/clients.ts";
import type { Vcsim } from "../support/vcsim.ts";

const POLL_MS = 50;
export const JOB_TIMEOUT_MS = 15 * 60_000;
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The simulator's SOAP endpoint and credentials, as a job definition's `vsphere` field (and openSession) want them. */
export const connection = (sim: Vcsim) => ({ url: sim.url, username: "user", password: "pass", insecure: true, thumbprint: "" });

/** SubmitJob, then GetJob every 50 ms until the job ends; anything but COMPLETED throws with the job's error. */
export async function runJob(client: GrpcJsClient, definition: Record<string, unknown>): Promise<Job> {
  const { job: submitted } = await client.unary("submitJob", { definition: definition as never });
  const deadline = Date.now() + JOB_TIMEOUT_MS;
  for (;;) {
    const { job } = await client.unary("getJob", { jobId: submitted!.id });
    if (job!.state === JobState.COMPLETED) return job!;
    if (job!.state === JobState.FAILED || job!.state === JobState.CANCELLED) throw new Error(`job ${job!.id} ended ${JobState[job!.state]}: ${job!.error?.message}`);
    if (Date.now() > deadline) throw new Error(`job ${submitted!.id} still ${JobState[job!.state]} after ${JOB_TIMEOUT_MS} ms`);
    await sleep(POLL_MS);
  }
}

/** The .vmdk files the job lists, as absolute paths with the SHA-256 the job reports for each. */
export function exportedDisks(job: Job): { file: string; sha256: string }[] {
  return job.result!.files.filter((f) => f.path.endsWith(".vmdk")).map((f) => ({ file: path.join(job.result!.outputDir, f.path), sha256: f.sha256 }));
}
