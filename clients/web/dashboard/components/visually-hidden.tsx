import type { ReactNode } from "react";

/** Text for screen readers and accessible names only: <button>Delete<VisuallyHidden> nightly-web</VisuallyHidden></button> is named "Delete nightly-web" but shows "Delete". */
export function VisuallyHidden({ children }: { children: ReactNode }) {
  return <span className="visually-hidden">{children}</span>;
}
