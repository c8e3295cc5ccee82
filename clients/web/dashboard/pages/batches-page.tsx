import { useEffect, useState, type FormEvent } from "react";
import type { Batch } from "../../index.ts";
import { BatchStateBadge } from "../components/batch-state-badge.tsx";
import { ErrorMessage } from "../components/error-message.tsx";
import { Field } from "../components/field.tsx";
import { Pager } from "../components/pager.tsx";
import { PercentBar } from "../components/percent-bar.tsx";
import { BATCH_STATES, batchPercent, batchStateName, countsText, freshestBatch, vmRows } from "../batch-view.ts";
import { formatBytes, formatTime } from "../format.ts";
import { useQuery, useThrottled } from "../query.ts";
import { navigate } from "../router.ts";
import { useClient, useLive } from "../session.tsx";
import "./batches.css";

const PAGE_SIZE = 25;

/** Batches (one submission or schedule run over several VMs), newest first; the state filter lives in the URL (#/batches?state=running). */
export function BatchesPage({ params }: { params: URLSearchParams }) {
  const client = useClient();
  const live = useLive();
  const stateFilter = params.get("state") ?? "";
  const [tokens, setTokens] = useState<string[]>([]);
  useEffect(() => setTokens([]), [stateFilter]);
  // A new batch or a batch's change reloads the page (throttled); the rows shown meanwhile take the live copies.
  const changes = useThrottled(live.batchChanges, 1000);
  const list = useQuery(async (signal) => {
    const state = BATCH_STATES.find((s) => batchStateName(s) === stateFilter);
    return client.listBatches({ states: state === undefined ? [] : [state], pageSize: PAGE_SIZE, pageToken: tokens.at(-1) ?? "" }, { signal });
  }, [client, stateFilter, tokens, changes]);

  const apply = (event: FormEvent<HTMLFormElement>) => {
    event.preventDefault();
    navigate("/batches", { state: String(new FormData(event.currentTarget).get("state") ?? "") || undefined });
  };

  return (
    <>
      <div className="page-head">
        <h1>Batches</h1>
        <span className="muted" aria-live="polite">{list.data ? `${String(list.data.totalSize)} matching` : ""}</span>
      </div>
      <p className="muted">A batch is one export of every VM a selector (a folder, a name pattern) matched: a job per VM.</p>
      <form className="filters" role="search" aria-label="Filter batches" onSubmit={apply} key={stateFilter}>
        <Field label="State">
          <select name="state" defaultValue={stateFilter}>
            <option value="">any</option>
            {BATCH_STATES.map((s) => <option key={s} value={batchStateName(s)}>{batchStateName(s)}</option>)}
          </select>
        </Field>
        <button type="submit" className="primary">Filter</button>
        {stateFilter && <a href="#/batches">Clear filter</a>}
      </form>
      <ErrorMessage error={list.error} />
      <div className="table-wrap">
        <table aria-label="Batches" aria-busy={list.loading}>
          <thead>
            <tr><th>Name</th><th>State</th><th>VMs</th><th>Progress</th><th className="num">Size</th><th>Created</th></tr>
          </thead>
          <tbody>
            {list.data?.batches.map((b) => <BatchRow key={b.id} batch={freshestBatch(b, live.batches.get(b.id))!} />)}
          </tbody>
        </table>
        {list.data?.batches.length === 0 && <p className="empty table-empty">No batches{stateFilter ? " match" : " yet: export a folder or a name pattern (hyperctl export --folder …)"}.</p>}
      </div>
      <Pager label="Batches pages" tokens={tokens} nextToken={list.data?.nextPageToken ?? ""} onChange={setTokens} />
    </>
  );
}

function BatchRow({ batch }: { batch: Batch }) {
  const live = useLive();
  const name = batch.name || batch.id;
  const rows = vmRows(batch, (id) => live.active.get(id) ?? live.ended.get(id));
  return (
    <tr>
      <td><a href={`#/batches/${batch.id}`}>{name}</a></td>
      <td><BatchStateBadge state={batch.state} /></td>
      <td>{batch.counts?.total ?? rows.length} <span className="muted">({countsText(batch.counts)})</span></td>
      <td><PercentBar percent={batchPercent(rows)} label={`Progress of batch ${name}`} tone={batchStateName(batch.state)} /></td>
      <td className="num">{batch.bytesTotal > 0n ? formatBytes(batch.bytesTotal) : "–"}</td>
      <td>{formatTime(batch.createTime)}</td>
    </tr>
  );
}
