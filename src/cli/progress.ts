/**
 * How `watch` shows a job's updates. On a terminal: one progress line redrawn in place
 * (bar, percent, MiB/s, ETA, phase). Otherwise: one line per state or phase change, for logs.
 */
import { JobState, type JobProgress } from "../../gen/hypervisord/v1/job_pb.js";
import { JobEventKind, type StreamJobUpdatesResponse } from "../../gen/hypervisord/v1/service_pb.js";
import { bytes, clock, localIso, rate } from "./format.ts";
import type { Writer } from "./io.ts";
import { percent, stateName } from "./job-view.ts";

export interface ProgressView {
  update(update: StreamJobUpdatesResponse): void;
  /** Clears the in-place line, if any, before the outcome is printed. */
  finish(): void;
}

const CLEAR_LINE = "\r\x1b[K";

export function createProgressView(out: Writer): ProgressView {
  return out.isTTY ? ttyView(out) : lineView(out);
}

function ttyView(out: Writer): ProgressView {
  let state = JobState.UNSPECIFIED;
  let progress: JobProgress | undefined;
  let drawn = false;
  const draw = () => {
    const columns = out.columns || 80;
    const p = progress;
    const pct = Math.max(0, Math.min(100, p?.percent ?? 0));
    const stats = state === JobState.RUNNING && p
      ? `${percent(p).padStart(6)}  ${rate(p.bytesPerSecond).padStart(11)}  ETA ${p.etaSeconds > 0 ? clock(p.etaSeconds) : "--:--"}  ${p.phase}`
      : `${percent(p).padStart(6)}  ${stateName(state)}`;
    const barWidth = Math.max(10, Math.min(40, columns - stats.length - 4));
    const filled = Math.round((pct / 100) * barWidth);
    const line = `[${"#".repeat(filled)}${"-".repeat(barWidth - filled)}] ${stats}`;
    out.write(`${CLEAR_LINE}${line.slice(0, columns - 1)}`);
    drawn = true;
  };
  return {
    update(u) {
      if (u.kind === JobEventKind.SYNCED) return;
      if (u.state !== JobState.UNSPECIFIED) state = u.state;
      if (u.progress) progress = u.progress;
      draw();
    },
    finish() {
      if (drawn) out.write(CLEAR_LINE);
    },
  };
}

function lineView(out: Writer): ProgressView {
  let state = JobState.UNSPECIFIED;
  let phase = "";
  return {
    update(u) {
      if (u.kind === JobEventKind.SYNCED) return;
      const nextState = u.state !== JobState.UNSPECIFIED ? u.state : state;
      const nextPhase = u.progress?.phase ?? phase;
      if (nextState === state && nextPhase === phase) return;
      state = nextState;
      phase = nextPhase;
      const p = u.progress;
      const size = p && p.bytesTotal > 0n ? `  ${bytes(p.bytesDone)}/${bytes(p.bytesTotal)}` : "";
      const why = u.reason ? `  (${u.reason})` : "";
      const shownPhase = phase && phase !== stateName(state) ? `  ${phase}` : "";
      out.write(`${localIso(new Date())}  ${stateName(state)}${shownPhase}  ${percent(p)}${size}${why}\n`);
    },
    finish() {},
  };
}
