import { create } from "@bufbuild/protobuf";
import type { HypervisordService } from "../../gen/hypervisord/v1/service_pb.js";
import { BatchSchema, BatchState as BatchStatePb, type Batch as BatchPb } from "../../gen/hypervisord/v1/batch_pb.js";
import type { Batch, BatchState } from "../domain/batch.ts";
import type { Engine } from "../engine/engine.ts";
import { InvalidArgumentError } from "../errors.ts";
import type { ServiceHandlers } from "../rpc/handlers.ts";
import { definitionToPb, stateToPb } from "./job-to-pb.ts";
import { decodePageToken, encodePageToken, pageSize } from "./page-token.ts";
import { int64, timestampOf } from "./pb-scalars.ts";

type BatchHandlers = Pick<ServiceHandlers<typeof HypervisordService>, "getBatch" | "listBatches" | "cancelBatch">;

/** A batch id from a request: required, and short enough to be one. */
export function batchIdOf(value: string, field = "batch_id"): string {
  const id = value.trim();
  if (!id) throw new InvalidArgumentError(field, "required");
  if (id.length > 128) throw new InvalidArgumentError(field, "too long to be a batch id");
  return id;
}

/** GetBatch, ListBatches (newest first, keyset page tokens bound to the filters) and CancelBatch. */
export function createBatchHandlers(engine: Engine): BatchHandlers {
  return {
    async getBatch(request) {
      return { batch: batchToPb(await engine.getBatch(batchIdOf(request.batchId))) };
    },

    async listBatches(request) {
      const states = request.states.map((s, i) => batchStateFromPb(s) ?? invalidState(s, `states[${i}]`));
      const limit = pageSize(request.pageSize, 50);
      const scheduleId = request.scheduleId.trim();
      if (scheduleId.length > 128) throw new InvalidArgumentError("schedule_id", "too long to be a schedule id");
      const query = { states: [...new Set(states)].sort(), scheduleId };
      const before = decodePageToken(request.pageToken, query);
      const page = await engine.listBatches({ states: query.states, scheduleId: scheduleId || undefined, before, limit });
      return {
        batches: page.batches.map(batchToPb),
        nextPageToken: page.nextCursor === undefined ? "" : encodePageToken(page.nextCursor, query),
        totalSize: BigInt(page.total),
      };
    },

    async cancelBatch(request) {
      return { batch: batchToPb(await engine.cancelBatch(batchIdOf(request.batchId), request.reason.trim(), "api")) };
    },
  };
}

function invalidState(state: BatchStatePb, field: string): BatchState {
  throw new InvalidArgumentError(field, `unknown batch state ${state}; use BATCH_STATE_RUNNING, _COMPLETED, _PARTIALLY_FAILED, _FAILED or _CANCELLED`);
}

const BATCH_STATE_TO_PB: Record<BatchState, BatchStatePb> = {
  running: BatchStatePb.RUNNING,
  completed: BatchStatePb.COMPLETED,
  partially_failed: BatchStatePb.PARTIALLY_FAILED,
  failed: BatchStatePb.FAILED,
  cancelled: BatchStatePb.CANCELLED,
};

export function batchStateFromPb(state: BatchStatePb): BatchState | undefined {
  return (Object.entries(BATCH_STATE_TO_PB) as [BatchState, BatchStatePb][]).find(([, v]) => v === state)?.[0];
}

/** A batch with its children; the definition redacted like a job's. */
export function batchToPb(batch: Batch): BatchPb {
  return create(BatchSchema, {
    id: batch.id,
    name: batch.name,
    state: BATCH_STATE_TO_PB[batch.state],
    definition: definitionToPb(batch.definition),
    counts: batch.counts,
    bytesDone: int64(batch.bytesDone),
    bytesTotal: int64(batch.bytesTotal),
    maxParallel: batch.maxParallel,
    scheduleId: batch.scheduleId ?? "",
    createTime: timestampOf(batch.createTime),
    endTime: timestampOf(batch.endTime),
    jobs: batch.jobs.map((j) => ({
      jobId: j.jobId, vm: j.vm, vmName: j.vmName, state: stateToPb(j.state), bytesDone: int64(j.bytesDone), bytesTotal: int64(j.bytesTotal), error: j.error,
    })),
  });
}
