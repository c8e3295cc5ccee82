import type { HypervisordService } from "../../gen/hypervisord/v1/service_pb.js";
import type { BatchState as BatchStatePb } from "../../gen/hypervisord/v1/batch_pb.js";
import type { BatchState } from "../domain/batch.ts";
import type { Engine } from "../engine/engine.ts";
import { InvalidArgumentError } from "../errors.ts";
import { batchStateFromPb, batchToPb } from "./convert.ts";
import type { ServiceHandlers } from "../rpc/handlers.ts";
import { decodePageToken, encodePageToken, pageSize } from "./page-token.ts";

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
      return { batch: batchToPb(engine.getBatch(batchIdOf(request.batchId))) };
    },

    async listBatches(request) {
      const states = request.states.map((s, i) => batchStateFromPb(s) ?? invalidState(s, `states[${i}]`));
      const limit = pageSize(request.pageSize, 50);
      const scheduleId = request.scheduleId.trim();
      if (scheduleId.length > 128) throw new InvalidArgumentError("schedule_id", "too long to be a schedule id");
      const query = { states: [...new Set(states)].sort(), scheduleId };
      const before = decodePageToken(request.pageToken, query);
      const page = engine.listBatches({ states: query.states, scheduleId: scheduleId || undefined, before, limit });
      return {
        batches: page.batches.map(batchToPb),
        nextPageToken: page.nextCursor === undefined ? "" : encodePageToken(page.nextCursor, query),
        totalSize: BigInt(page.total),
      };
    },

    async cancelBatch(request) {
      return { batch: batchToPb(engine.cancelBatch(batchIdOf(request.batchId), request.reason.trim(), "api")) };
    },
  };
}

function invalidState(state: BatchStatePb, field: string): BatchState {
  throw new InvalidArgumentError(field, `unknown batch state ${state}; use BATCH_STATE_RUNNING, _COMPLETED, _PARTIALLY_FAILED, _FAILED or _CANCELLED`);
}
