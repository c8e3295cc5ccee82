import { useState } from "react";
import { create } from "@bufbuild/protobuf";
import { JobProgressSchema, type BatchCounts } from "../../index.ts";
import { BatchStateBadge } from "../components/batch-state-badge.tsx";
import { ConfirmButton } from "../components/confirm-button.tsx";
import { ErrorMessage } from "../components/error-message.tsx";
import { KeyValues } from "../components/key-values.tsx";
import { PercentBar } from "../components/percent-bar.tsx";
import { ProgressBar } from "../components/progress-bar.tsx";
import { StateBadge } from "../components/state-badge.tsx";
import { batchPercent, batchStateName, countsText, freshestBatch, isBatchEnded, vmRows, type VmRow } from "../batch-view.ts";
import { elapsedSeconds, formatBytes, formatDuration, formatLabels, formatTime, stateName } from "../format.ts";
import { useQuery, useThrottled } from "../query.ts";
import { useClient, useLive } from "../session.tsx";
import "./batches.css";

/** The counts as the rows have them: the children's own updates can be newer than the batch's last change. */
function rowCounts(rows: readonly VmRow[]): Omit<BatchCounts, "$typeName" | "$unknown"> {
  const count = (name: string) => rows.filter((r) => stateName(r.state) === name).length;
  return { queued: count("queued"), running: count("running"), completed: count("completed"), failed: count("failed"), cancelled: count("cancelled"), total: rows.length };
}

/** One batch: its state, counts, bytes and a total bar, then a row per VM with its job's bar and a link to the job. */
export function BatchPage({ batchId }: { batchId: string }) {
  const client = useClient();
  const live = useLive();
  const liveBatch = live.batches.get(batchId);
  // Reload on the batch's own changes (throttled), and when the stream comes back (batchChanges is bumped then too).
  const changes = useThrottled(live.batchChanges, 500);
  const loaded = useQuery((signal) => client.getBatch({ batchId }, { signal }), [client, batchId, changes]);
  const [cancelError, setCancelError] = useState<unknown>();
  const [cancelling, setCancelling] = useState(false);
  const batch = freshestBatch(loaded.data?.batch, liveBatch);
  if (!batch) return <>{loaded.error ? <><h1>Batch {batchId}</h1><ErrorMessage error={loaded.error} /></> : <p aria-busy="true">Loading batch {batchId}…</p>}</>;
  const name = batch.name || batch.id;
  const rows = vmRows(batch, (id) => live.active.get(id) ?? live.ended.get(id));
  const counts = rowCounts(rows);
  const cancel = async () => {
    setCancelError(undefined);
    setCancelling(true);
    try {
      await client.cancelBatch({ batchId, reason: "cancelled from the dashboard" });
      loaded.reload();
    } catch (err) {
      setCancelError(err);
    } finally {
      setCancelling(false);
    }
  };
  const selector = batch.definition?.vmSelector;
  return (
    <>
      <div className="page-head">
        <h1>{name}</h1>
        <BatchStateBadge state={batch.state} />
        <span className="muted mono">{batch.id}</span>
        <div className="actions">
          {!isBatchEnded(batch.state) && (
            <ConfirmButton className="danger" confirm={`Cancel every job of this batch that has not ended?`} onConfirm={cancel} disabled={cancelling}>Cancel batch</ConfirmButton>
          )}
          <a href="#/batches">All batches</a>
        </div>
      </div>
      <ErrorMessage error={cancelError} prefix="Cancel" />
      <ErrorMessage error={loaded.error} />
      <section className="card" aria-labelledby="batch-progress-title">
        <h2 id="batch-progress-title">Progress</h2>
        <div className="batch-total">
          <PercentBar percent={batchPercent(rows)} label={`Total progress of batch ${name}`} tone={batchStateName(batch.state)}
            detail={`${countsText(counts)}${batch.bytesTotal > 0n ? ` · ${formatBytes(batch.bytesDone)} of ${formatBytes(batch.bytesTotal)}` : ""}`} />
        </div>
        <KeyValues label="Batch" rows={[
          ["VMs", String(counts.total)],
          ["queued", String(counts.queued)],
          ["running", String(counts.running)],
          ["completed", String(counts.completed)],
          ["failed", counts.failed > 0 && String(counts.failed)],
          ["cancelled", counts.cancelled > 0 && String(counts.cancelled)],
          ["bytes", batch.bytesTotal > 0n && `${formatBytes(batch.bytesDone)} of ${formatBytes(batch.bytesTotal)}`],
          ["folder", selector?.folder && <code>{selector.folder}{selector.recursive === false ? " (not its subfolders)" : ""}</code>],
          ["name pattern", selector?.nameGlob && <code>{selector.nameGlob}</code>],
          ["at most in parallel", batch.maxParallel > 0 && String(batch.maxParallel)],
          ["output directory", batch.definition?.outputDir && <code>{batch.definition.outputDir}</code>],
          ["labels", formatLabels(batch.definition?.labels ?? {})],
          ["schedule", batch.scheduleId && <a href="#/schedules">{batch.scheduleId}</a>],
          ["created", formatTime(batch.createTime)],
          ["ended", batch.endTime && formatTime(batch.endTime)],
          ["duration", formatDuration(elapsedSeconds(batch.createTime, batch.endTime))],
        ]} />
      </section>
      <section className="card" aria-labelledby="batch-vms-title">
        <h2 id="batch-vms-title">VMs</h2>
        <div className="table-wrap">
          <table aria-label="VMs of the batch">
            <thead><tr><th>VM</th><th>State</th><th>Progress</th><th>Job</th><th>Error</th></tr></thead>
            <tbody>
              {rows.map((row) => (
                <tr key={row.jobId}>
                  <td><span title={row.vm}>{row.name}</span></td>
                  <td><StateBadge state={row.state} /></td>
                  <td><ProgressBar progress={row.progress ?? create(JobProgressSchema, { percent: row.percent })} state={row.state} label={`Progress of ${row.name}`} /></td>
                  <td><a href={`#/jobs/${row.jobId}`} aria-label={`Job of ${row.name}`} className="mono">{row.jobId}</a></td>
                  <td>{row.error && <span className="error-text">{row.error.code}: {row.error.message}</span>}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      </section>
    </>
  );
}
