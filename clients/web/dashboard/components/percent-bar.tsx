import { formatPercent } from "../format.ts";

/** A labelled bar for a percentage that is not one job's progress (a batch's total); `tone` picks the colour as the job bars do. */
export function PercentBar({ percent, label, tone, detail }: { percent: number; label: string; tone: string; detail?: string }) {
  const value = Math.max(0, Math.min(100, percent));
  const text = formatPercent(value);
  return (
    <div className={`progress progress-${tone}`}>
      <div className="progress-track" role="progressbar" aria-label={label} aria-valuemin={0} aria-valuemax={100} aria-valuenow={Math.round(value * 10) / 10} aria-valuetext={detail ? `${text}, ${detail}` : text}>
        <div className="progress-fill" style={{ width: `${value}%` }} />
      </div>
      <span className="progress-text">{text}</span>
      {detail && <div className="progress-detail"><span>{detail}</span></div>}
    </div>
  );
}
