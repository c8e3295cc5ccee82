/**
 * Job and batch ids from the command line: a full id as it is, or any unique prefix of one
 * (`hyperctl get 0193a2b4`), resolved on the client so that the API keeps taking whole ids only.
 * A UUID-shaped argument is used as it is (no extra call); anything else is first tried as an id.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { HypervisordClient } from "../../clients/node/index.ts";
import { batchStateName } from "./batch-view.ts";
import { stateName } from "./job-view.ts";
import { table } from "./table.ts";

/** Ids are UUIDv7: a whole one needs no lookup. */
const FULL_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Candidates listed for an ambiguous prefix; the search stops once it has more than this. */
const SHOWN = 10;
/** ListJobs' `query` is at most 200 characters; a longer argument cannot be a prefix of an id anyway. */
const MAX_QUERY = 200;
/** ListBatches has no text filter: at most this many pages of 1000 are searched. */
const MAX_BATCH_PAGES = 20;

/** An id prefix that more than one job or batch starts with. */
export class AmbiguousIdError extends Error {
  override name = "AmbiguousIdError";
}

interface Candidate {
  id: string;
  name: string;
  state: string;
}

/** The whole id of the job `arg` names: itself when it is whole or a job's exact id, else the one job whose id starts with it. */
export async function resolveJobId(client: HypervisordClient, arg: string): Promise<string> {
  const prefix = arg.trim();
  if (prefix === "" || FULL_ID.test(prefix) || prefix.length > MAX_QUERY) return prefix;
  if (await exists(() => client.getJob({ jobId: prefix }))) return prefix;
  const found: Candidate[] = [];
  let pageToken = "";
  // The text filter matches ids as substrings (and names, VMs, ...): keep the jobs whose id starts with the prefix.
  do {
    const page = await client.listJobs({ query: prefix, pageSize: 1000, pageToken });
    for (const job of page.jobs) {
      if (startsWith(job.id, prefix)) found.push({ id: job.id, name: job.definition?.name || job.definition?.vm || "-", state: stateName(job.state) });
    }
    pageToken = page.nextPageToken;
  } while (pageToken && found.length <= SHOWN);
  return chosen("job", prefix, found);
}

/** The same for batches (ListBatches has no text filter: the newest MAX_BATCH_PAGES pages are searched). */
export async function resolveBatchId(client: HypervisordClient, arg: string): Promise<string> {
  const prefix = arg.trim();
  if (prefix === "" || FULL_ID.test(prefix)) return prefix;
  if (await exists(() => client.getBatch({ batchId: prefix }))) return prefix;
  const found: Candidate[] = [];
  let pageToken = "";
  let pages = 0;
  do {
    const page = await client.listBatches({ pageSize: 1000, pageToken });
    for (const batch of page.batches) {
      if (startsWith(batch.id, prefix)) found.push({ id: batch.id, name: batch.name || "-", state: batchStateName(batch.state) });
    }
    pageToken = page.nextPageToken;
  } while (pageToken && found.length <= SHOWN && ++pages < MAX_BATCH_PAGES);
  return chosen("batch", prefix, found);
}

/**
 * Whether the argument is itself an id (an exact id wins over prefixes, and an id of another shape, e.g. from a
 * daemon that names ids differently, is taken as it is): NOT_FOUND means "look for a prefix", anything else is thrown.
 */
async function exists(get: () => Promise<unknown>): Promise<boolean> {
  try {
    await get();
    return true;
  } catch (err) {
    if (err instanceof ConnectError && err.code === Code.NotFound) return false;
    throw err;
  }
}

function startsWith(id: string, prefix: string): boolean {
  return id.toLowerCase().startsWith(prefix.toLowerCase());
}

function chosen(kind: "job" | "batch", prefix: string, found: readonly Candidate[]): string {
  if (found.length === 1) return found[0]!.id;
  if (found.length === 0) throw new ConnectError(`${kind} ${prefix} not found (no ${kind} id is or starts with "${prefix}")`, Code.NotFound);
  const count = found.length > SHOWN ? `more than ${SHOWN} ${kind}s` : `${found.length} ${kind}s`;
  const rows = table(["ID", "NAME", "STATE"], found.slice(0, SHOWN).map((c) => [c.id, c.name, c.state])).replace(/^/gm, "  ");
  throw new AmbiguousIdError(`${kind} id prefix "${prefix}" is ambiguous: ${count} start with it; give more of the id:\n${rows}`);
}
