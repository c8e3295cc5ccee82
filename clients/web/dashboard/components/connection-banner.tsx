import { useEffect, useState } from "react";
import { useLive, useSession } from "../session.tsx";

/** Says so, at the top of every page, while the daemon cannot be reached; the live stream retries by itself. */
export function ConnectionBanner() {
  const { live, baseUrl } = useSession();
  const state = useLive();
  const [, tick] = useState(0);
  useEffect(() => {
    if (state.status !== "reconnecting") return;
    const timer = setInterval(() => tick((n) => n + 1), 1000);
    return () => clearInterval(timer);
  }, [state.status]);
  if (state.status === "reconnecting") {
    const seconds = Math.max(0, Math.ceil((state.retryAt - Date.now()) / 1000));
    return (
      <div className="banner banner-error" role="alert">
        <strong>The daemon at {baseUrl} is unreachable.</strong> Reconnecting {seconds > 0 ? `in ${seconds} s` : "now"} (attempt {state.attempt}).
        {state.lastError && <span className="banner-detail"> Last error: {state.lastError}</span>}
        <button type="button" onClick={() => live.retryNow()}>Retry now</button>
      </div>
    );
  }
  if (state.status === "failed") {
    return <div className="banner banner-error" role="alert"><strong>Live updates are off:</strong> {state.lastError}</div>;
  }
  return null;
}
