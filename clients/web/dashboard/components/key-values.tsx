import type { ReactNode } from "react";

/** A two-column description list; rows whose value is undefined, null, false or "" are left out. */
export function KeyValues({ rows, label }: { rows: [string, ReactNode][]; label?: string }) {
  const shown = rows.filter(([, value]) => value !== undefined && value !== null && value !== false && value !== "");
  return (
    <dl className="key-values" aria-label={label}>
      {shown.map(([key, value]) => (
        <div key={key}>
          <dt>{key}</dt>
          <dd>{value}</dd>
        </div>
      ))}
    </dl>
  );
}
