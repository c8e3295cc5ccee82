import { cloneElement, useId, type ReactElement, type ReactNode } from "react";

/**
 * A form control with its visible label. The label wraps the label text and the control only, so the
 * control's accessible name is exactly `label`; the hint is linked with aria-describedby.
 */
export function Field({ label, hint, children, inline = false }: { label: string; hint?: ReactNode; children: ReactElement<{ "aria-describedby"?: string }>; inline?: boolean }) {
  const hintId = useId();
  const control = hint ? cloneElement(children, { "aria-describedby": hintId }) : children;
  return (
    <div className={inline ? "field field-inline" : "field"}>
      <label>
        {inline ? control : <span className="field-label">{label}</span>}
        {inline ? <span className="field-label">{label}</span> : control}
      </label>
      {hint && <span className="field-hint" id={hintId}>{hint}</span>}
    </div>
  );
}
