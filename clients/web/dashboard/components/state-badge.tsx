import type { JobState } from "../../index.ts";
import { stateName } from "../format.ts";

export function StateBadge({ state }: { state: JobState }) {
  const name = stateName(state);
  return <span className={`badge badge-${name}`}>{name}</span>;
}
