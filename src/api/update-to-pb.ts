import { create } from "@bufbuild/protobuf";
import { JobState as JobStatePb } from "../../gen/hypervisord/v1/job_pb.js";
import { JobEventKind, StreamJobUpdatesResponseSchema, type StreamJobUpdatesResponse } from "../../gen/hypervisord/v1/service_pb.js";
import type { JobUpdate, JobUpdateKind } from "../engine/update.ts";
import { batchToPb } from "./batches.ts";
import { jobToPb, progressToPb, stateToPb } from "./job-to-pb.ts";
import { preciseTimestamp } from "./pb-scalars.ts";

const KIND_TO_PB: Record<JobUpdateKind, JobEventKind> = {
  snapshot: JobEventKind.SNAPSHOT,
  created: JobEventKind.CREATED,
  state_changed: JobEventKind.STATE_CHANGED,
  progress: JobEventKind.PROGRESS,
  synced: JobEventKind.SYNCED,
  batch_changed: JobEventKind.BATCH_CHANGED,
};

const updateCache = new WeakMap<JobUpdate, StreamJobUpdatesResponse>();

/** Updates are shared by all subscribers: convert each once. */
export function updateToPb(update: JobUpdate): StreamJobUpdatesResponse {
  let message = updateCache.get(update);
  if (!message) {
    message = create(StreamJobUpdatesResponseSchema, {
      seq: BigInt(update.seq),
      jobId: update.jobId,
      kind: KIND_TO_PB[update.kind],
      state: update.state ? stateToPb(update.state) : JobStatePb.UNSPECIFIED,
      progress: update.progress && progressToPb(update.progress),
      job: update.job && jobToPb(update.job),
      time: preciseTimestamp(update.time),
      reason: update.reason ?? "",
      batch: update.batch && batchToPb(update.batch),
    });
    updateCache.set(update, message);
  }
  return message;
}
