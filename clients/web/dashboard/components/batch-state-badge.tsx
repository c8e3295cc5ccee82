import type { BatchState } from "../../index.ts";
import { batchStateName } from "../batch-view.ts";

export function BatchStateBadge({ state }: { state: BatchState }) {
  const name = batchStateName(state);
  return <span className={`badge badge-${name}`}>{name}</span>;
}
