import { describeError, isNetworkError } from "../format.ts";
import { useLive } from "../session.tsx";

/**
 * A failed call, read out by screen readers as it appears. Nothing when there is no error, nor for a
 * network error while the banner already says the daemon is unreachable (the view reloads when it is back).
 */
export function ErrorMessage({ error, prefix }: { error: unknown; prefix?: string }) {
  const live = useLive();
  if (error === undefined || error === null) return null;
  if (live.status === "reconnecting" && isNetworkError(error)) return null;
  return (
    <p className="error" role="alert">
      {prefix && <strong>{prefix}: </strong>}
      {describeError(error)}
    </p>
  );
}
