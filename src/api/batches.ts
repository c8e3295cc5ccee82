import type { HypervisordService } from "../../gen/hypervisord/v1/service_pb.js";
import { HypervisordError } from "../errors.ts";
import type { ServiceHandlers } from "./handlers.ts";

// PLACEHOLDER while the batch handlers are being written (issue 13): replaced before this lands.
type BatchHandlers = Pick<ServiceHandlers<typeof HypervisordService>, "getBatch" | "listBatches" | "cancelBatch">;

export function createBatchHandlers(): BatchHandlers {
  const unimplemented = async (): Promise<never> => {
    throw new HypervisordError("UNIMPLEMENTED", "batches are not implemented yet");
  };
  return { getBatch: unimplemented, listBatches: unimplemented, cancelBatch: unimplemented };
}
