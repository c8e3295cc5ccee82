import { useState, type ReactNode } from "react";

/** A button that asks once more, in place (no modal), before it acts. */
export function ConfirmButton({ children, confirm, onConfirm, disabled, className }: { children: ReactNode; confirm: string; onConfirm(): void | Promise<void>; disabled?: boolean; className?: string }) {
  const [asking, setAsking] = useState(false);
  if (!asking) {
    return <button type="button" className={className} disabled={disabled} onClick={() => setAsking(true)}>{children}</button>;
  }
  return (
    <span className="confirm" role="group" aria-label={confirm}>
      <span>{confirm}</span>
      <button type="button" className="danger" autoFocus onClick={() => { setAsking(false); void onConfirm(); }}>Yes</button>
      <button type="button" onClick={() => setAsking(false)}>No</button>
    </span>
  );
}
