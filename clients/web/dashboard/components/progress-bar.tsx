import { JobState, type JobProgress } from "../../index.ts";
import { formatBytes, formatDuration, formatRate, stateName } from "../format.ts";

/** A job's progress as a labelled bar; `detail` adds bytes, speed and ETA under it. */
export function ProgressBar({ progress, state, label, detail = false }: { progress?: JobProgress; state: JobState; label: string; detail?: boolean }) {
  const percent = state === JobState.COMPLETED ? 100 : Math.max(0, Math.min(100, progress?.percent ?? 0));
  const text = `${percent.toFixed(percent < 10 && percent > 0 ? 1 : 0)}%`;
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
          {progress.filesTotal > 0 && <span>files {progress.filesDone}/{progress.filesTotal}</span>}
          {progress.currentFile && <span className="mono">{progress.currentFile}</span>}
        </div>
      )}
    </div>
  );
}
