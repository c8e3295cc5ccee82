import { JobState, type JobProgress } from "../../index.ts";
import { formatBytes, formatDuration, formatPercent, formatRate, stateName } from "../format.ts";

/**
 * A job's progress as a labelled bar; `detail` adds bytes, speed and ETA under it. `files` replaces the
 * progress's file count (a completed job's comes from its result: job-facts.ts jobFiles).
 */
export function ProgressBar({ progress, state, label, detail = false, files }: {
  progress?: JobProgress; state: JobState; label: string; detail?: boolean; files?: { done: number; total: number };
}) {
  const percent = state === JobState.COMPLETED ? 100 : Math.max(0, Math.min(100, progress?.percent ?? 0));
  const text = formatPercent(percent);
  const fileCount = files ?? (progress && progress.filesTotal > 0 ? { done: progress.filesDone, total: progress.filesTotal } : undefined);
  return (
    <div className={`progress progress-${stateName(state)}`}>
      <div className="progress-track" role="progressbar" aria-label={label} aria-valuemin={0} aria-valuemax={100} aria-valuenow={Math.round(percent * 10) / 10} aria-valuetext={`${text} ${progress?.phase ?? ""}`.trim()}>
        <div className="progress-fill" style={{ width: `${percent}%` }} />
      </div>
      <span className="progress-text">{text}</span>
      {detail && progress && (
        <div className="progress-detail">
          {progress.phase && <span>{progress.phase}</span>}
          {progress.bytesTotal > 0n && <span>{formatBytes(progress.bytesDone)} of {formatBytes(progress.bytesTotal)}</span>}
          {progress.bytesPerSecond > 0 && state === JobState.RUNNING && <span>{formatRate(progress.bytesPerSecond)}</span>}
          {progress.etaSeconds > 0 && state === JobState.RUNNING && <span>ETA {formatDuration(progress.etaSeconds)}</span>}
          {fileCount && <span>files {fileCount.done}/{fileCount.total}</span>}
          {progress.currentFile && state === JobState.RUNNING && <span className="mono">{progress.currentFile}</span>}
        </div>
      )}
    </div>
  );
}
