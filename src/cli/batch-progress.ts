/**
 * How `export --folder ... --watch` shows a batch: one line per VM (name, state, percent, bytes,
 * rate) and a total line. On a terminal the block is redrawn in place; otherwise a line is appended
 * whenever a VM's state or phase changes, and a total line whenever the counts change, for logs.
 */
import type { Batch } from "../../gen/hypervisord/v1/batch_pb.js";
import { JobState, type JobProgress } from "../../gen/hypervisord/v1/job_pb.js";
import { JobEventKind, type StreamJobUpdatesResponse } from "../../gen/hypervisord/v1/service_pb.js";
import { isTerminal } from "../../clients/core/watch-job.ts";
import { countsText } from "./batch-view.ts";
import { bytes, localIso, rate } from "./format.ts";
import type { Writer } from "./io.ts";
import { stateName } from "./job-view.ts";

export interface BatchProgressView {
  batch(batch: Batch): void;
  update(update: StreamJobUpdatesResponse): void;
  /** Draws the final state (the block stays on a terminal) before the outcome is printed. */
  finish(batch?: Batch): void;
}

interface Row {
  name: string;
  state: JobState;
  progress?: JobProgress;
  bytesDone: bigint;
  bytesTotal: bigint;
}

/** The VMs of a batch as the updates tell them: the batch's own list, made fresher by the child jobs' updates. */
function createRows() {
  const rows = new Map<string, Row>();
  // The stream sends the children's snapshots before the batch itself: kept until the batch names them.
  const early = new Map<string, StreamJobUpdatesResponse[]>();
  const apply = (row: Row, u: StreamJobUpdatesResponse) => {
    // An ended job is final: a progress update sent just before its end and read after it changes nothing.
    if (isTerminal(row.state)) return;
    if (u.state !== JobState.UNSPECIFIED) row.state = u.state;
    if (u.progress) {
      row.progress = u.progress;
      row.bytesDone = u.progress.bytesDone;
      row.bytesTotal = u.progress.bytesTotal;
    }
  };
  return {
    rows,
    batch(batch: Batch) {
      for (const job of batch.jobs) {
        const row = rows.get(job.jobId);
        if (!row) {
          const added: Row = { name: job.vmName || job.vm, state: job.state, bytesDone: job.bytesDone, bytesTotal: job.bytesTotal };
          rows.set(job.jobId, added);
          for (const u of early.get(job.jobId) ?? []) apply(added, u);
          early.delete(job.jobId);
          continue;
        }
        // The batch's copy of a child can lag behind the child's own updates (its bytes are the stored
        // progress): it only moves a row forward.
        if (stage(job.state) >= stage(row.state)) row.state = job.state;
        if (job.bytesDone > row.bytesDone) row.bytesDone = job.bytesDone;
        if (job.bytesTotal > row.bytesTotal) row.bytesTotal = job.bytesTotal;
      }
    },
    /** The row an update changed, or undefined when it is not about a known child. */
    update(u: StreamJobUpdatesResponse): Row | undefined {
      if (!u.jobId || u.kind === JobEventKind.SYNCED || u.kind === JobEventKind.BATCH_CHANGED) return undefined;
      const row = rows.get(u.jobId);
      if (!row) {
        early.set(u.jobId, [...(early.get(u.jobId) ?? []).slice(-7), u]);
        return undefined;
      }
      apply(row, u);
      return row;
    },
  };
}

/** queued -> running -> ended: how far along a child is (a retry goes back to queued through its own update). */
function stage(state: JobState): number {
  return isTerminal(state) ? 2 : state === JobState.RUNNING ? 1 : 0;
}

/** From the bytes when they are known (the freshest of the job's and the batch's copies), else the job's own percent. */
function rowPercent(row: Row): number {
  if (row.state === JobState.COMPLETED) return 100;
  if (row.bytesTotal > 0n) return Math.min(100, Number((row.bytesDone * 1000n) / row.bytesTotal) / 10);
  return Math.max(0, Math.min(100, row.progress?.percent ?? 0));
}

function pctText(value: number): string {
  return `${value.toFixed(value >= 100 || value === 0 ? 0 : 1)}%`;
}

function sizeText(done: bigint, total: bigint): string {
  return total > 0n ? `${bytes(done)}/${bytes(total)}` : done > 0n ? bytes(done) : "-";
}

function rowRate(row: Row): number {
  return row.state === JobState.RUNNING ? (row.progress?.bytesPerSecond ?? 0) : 0;
}

/** Over every VM, an ended one counting as done: how far the batch is. */
function totals(rows: readonly Row[]) {
  const done = rows.reduce((sum, r) => sum + r.bytesDone, 0n);
  const total = rows.reduce((sum, r) => sum + r.bytesTotal, 0n);
  const percent = rows.length ? rows.reduce((sum, r) => sum + (isTerminal(r.state) ? 100 : rowPercent(r)), 0) / rows.length : 0;
  // Jobs that have not started do not know their size yet: the total is then a lower bound.
  const partial = rows.some((r) => r.bytesTotal === 0n && !isTerminal(r.state));
  return { done, total, partial, percent, rate: rows.reduce((sum, r) => sum + rowRate(r), 0) };
}

/** The counts as the rows have them: a child's own update can be newer than the batch's last change. */
function rowCounts(rows: readonly Row[]) {
  const count = (state: JobState) => rows.filter((r) => r.state === state).length;
  return {
    queued: count(JobState.QUEUED), running: count(JobState.RUNNING), completed: count(JobState.COMPLETED),
    failed: count(JobState.FAILED), cancelled: count(JobState.CANCELLED), total: rows.length,
  };
}

function totalSize(t: ReturnType<typeof totals>): string {
  return t.total > 0n && t.partial ? `${bytes(t.done)}/≥${bytes(t.total)}` : sizeText(t.done, t.total);
}

export function createBatchProgressView(out: Writer): BatchProgressView {
  return out.isTTY ? ttyView(out) : lineView(out);
}

const BAR = 16;
const REDRAW_MS = 100;

function bar(percent: number): string {
  const filled = Math.round((Math.max(0, Math.min(100, percent)) / 100) * BAR);
  return `[${"#".repeat(filled)}${"-".repeat(BAR - filled)}]`;
}

/** Running first, then queued, then the ended ones: what to keep when the terminal is too short for every VM. */
const ORDER: Partial<Record<JobState, number>> = { [JobState.RUNNING]: 0, [JobState.QUEUED]: 1, [JobState.FAILED]: 2, [JobState.CANCELLED]: 3, [JobState.COMPLETED]: 4 };

function ttyView(out: Writer): BatchProgressView {
  const model = createRows();
  let drawnLines = 0;
  let lastDraw = 0;
  const draw = () => {
    const columns = out.columns || 80;
    let rows = [...model.rows.values()];
    const room = out.rows ? Math.max(3, out.rows - 3) : Infinity;
    let hidden = 0;
    if (rows.length > room) {
      const shown = new Set([...rows].sort((a, b) => (ORDER[a.state] ?? 5) - (ORDER[b.state] ?? 5)).slice(0, room - 1));
      hidden = rows.length - shown.size;
      rows = rows.filter((r) => shown.has(r));
    }
    const width = Math.min(32, Math.max(5, ...rows.map((r) => r.name.length)));
    const sizes = rows.map((r) => sizeText(r.bytesDone, r.bytesTotal));
    const sizeWidth = Math.max(...sizes.map((s) => s.length));
    const line = (name: string, percent: number, what: string, size: string, speed: number) =>
      `${name.slice(0, width).padEnd(width)}  ${bar(percent)} ${pctText(percent).padStart(6)}  ${what.padEnd(11)}  ${size.padEnd(sizeWidth)}  ${speed > 0 ? rate(speed) : ""}`.trimEnd();
    const lines = rows.map((r, i) => line(r.name, rowPercent(r), r.state === JobState.RUNNING && r.progress?.phase ? r.progress.phase : stateName(r.state), sizes[i]!, rowRate(r)));
    if (hidden) lines.push(`… and ${hidden} more`);
    const all = [...model.rows.values()];
    const t = totals(all);
    const speed = t.rate > 0 ? `  ${rate(t.rate)}` : "";
    lines.push(`${"total".padEnd(width)}  ${bar(t.percent)} ${pctText(t.percent).padStart(6)}  ${totalSize(t)}${speed}  ${countsText(rowCounts(all))}`);
    // Back to the block's first line, clear to the end of the screen, write it again; lines are cut to the width so none wraps.
    out.write(`${drawnLines ? `\x1b[${drawnLines}A\r` : ""}\x1b[J${lines.map((l) => `${l.slice(0, columns - 1)}\n`).join("")}`);
    drawnLines = lines.length;
    lastDraw = Date.now();
  };
  return {
    batch(batch) {
      model.batch(batch);
      draw();
    },
    update(u) {
      const row = model.update(u);
      if (row && (u.kind !== JobEventKind.PROGRESS || Date.now() - lastDraw >= REDRAW_MS)) draw();
    },
    finish(batch) {
      if (batch) model.batch(batch);
      if (model.rows.size) draw();
    },
  };
}

function lineView(out: Writer): BatchProgressView {
  const model = createRows();
  const shown = new Map<string, string>(); // job id -> state/phase last printed
  let shownCounts = "";
  const rowLine = (jobId: string, row: Row) => {
    const phase = row.state === JobState.RUNNING ? (row.progress?.phase ?? "") : "";
    const key = `${row.state}/${phase}`;
    if (shown.get(jobId) === key) return;
    shown.set(jobId, key);
    const speed = rowRate(row);
    out.write(`${localIso(new Date())}  ${row.name}  ${stateName(row.state)}${phase && phase !== "running" ? `  ${phase}` : ""}  ${pctText(rowPercent(row))}  ${sizeText(row.bytesDone, row.bytesTotal)}${speed > 0 ? `  ${rate(speed)}` : ""}\n`);
  };
  const totalLine = (force: boolean) => {
    const counts = countsText(rowCounts([...model.rows.values()]));
    if (!force && counts === shownCounts) return;
    shownCounts = counts;
    const t = totals([...model.rows.values()]);
    out.write(`${localIso(new Date())}  total  ${model.rows.size} VMs: ${counts}  ${pctText(t.percent)}  ${totalSize(t)}\n`);
  };
  return {
    batch(batch) {
      model.batch(batch);
      for (const [jobId, row] of model.rows) rowLine(jobId, row);
      totalLine(false);
    },
    update(u) {
      const row = model.update(u);
      if (row) rowLine(u.jobId, row);
    },
    finish(batch) {
      if (batch) model.batch(batch);
      for (const [jobId, row] of model.rows) rowLine(jobId, row);
      totalLine(false);
    },
  };
}
