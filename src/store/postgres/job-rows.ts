import type { Job, JobDefinition } from "../../domain/job.ts";
import { redactUrl } from "../../redact-url.ts";
import type { SecretBox } from "../secret-box.ts";
import { jobRowReader, type JobRow } from "../sqlite/job-rows.ts";

/**
 * A row of the PostgreSQL jobs table: SQLite's columns (read by the same reader, so both stores open the same
 * sealed secrets) plus the cluster's. The pool parses BIGINT as numbers, so the column types match.
 */
export interface PgJobRow extends JobRow {
  checkpoint: string | null;
  node_id: string | null;
  lease_expires: number | null;
  target_host: string | null;
}

export function pgJobRowReader(box: SecretBox): (row: PgJobRow) => Job {
  const read = jobRowReader(box);
  return (row) => ({ ...read(row), ...(row.node_id ? { nodeId: row.node_id } : {}) });
}

/** The providers whose jobs carry a target host (the prefix of target_host). */
export const TARGET_PROVIDERS = ["vsphere", "azure"] as const;

/**
 * The hypervisor host whose cluster-wide cap on running jobs applies to this definition: the vCenter/ESXi host
 * of its vSphere URL or its Azure subscription; "<provider>:default" when the daemon's default connection is used.
 */
export function targetHost(definition: JobDefinition): string | null {
  if (definition.provider === "vsphere") return `vsphere:${definition.vsphere?.url ? urlHost(definition.vsphere.url) : "default"}`;
  if (definition.provider === "azure") return `azure:${definition.azure?.subscriptionId || "default"}`;
  return null;
}

/** host[:port] as the transfer slots key it; text that does not parse counts as a host of its own (redacted: the column is not sealed). */
function urlHost(url: string): string {
  return URL.canParse(url) ? new URL(url).host : redactUrl(url);
}
