/**
 * How long `watch` (and `export --watch`, `batches watch`) keeps trying to reach a daemon that is not there
 * before it gives up with exit code 3 (DaemonUnreachable). The client library would reconnect for about
 * half a minute; a user at a terminal, or a script, should hear sooner that the daemon is gone.
 */
import type { ConnectError } from "@connectrpc/connect";
import { DaemonUnreachable, transportProblem, unreachableMessage } from "./errors.ts";

/** Never reached: a wrong address or a stopped daemon. Short, but a daemon just starting gets a few retries. */
export const NEVER_REACHED_MS = 3_000;
/**
 * Reached, then lost: a restart. systemd's unit restarts a crashed daemon after RestartSec=5s and the daemon
 * takes a second or two to listen again; 15 s covers that, and is still "a few seconds" to a user.
 */
export const LOST_MS = 15_000;
/** No answer at all (a host that drops packets): the connection attempt itself hangs until this. */
export const NO_ANSWER_MS = 10_000;

/** Backoff between reconnections: first tries soon, then every 2 s at most, so a daemon back is found quickly. */
export const RECONNECT_BACKOFF = { initialMs: 250, maxMs: 2_000 };

export interface ReconnectBudget {
  /** Aborted with the interrupt's reason (Ctrl-C) or with DaemonUnreachable when the budget is spent. */
  readonly signal: AbortSignal;
  /** Whether the daemon answered at all: only then is a reconnection worth announcing (a stream that was never up did not drop). */
  readonly reachedOnce: boolean;
  /** Every update: the daemon is there. */
  reached(): void;
  /** From onReconnect: the stream dropped with `error`; the clock starts at the first drop of a run. */
  dropped(error: ConnectError): void;
  /** Clears the timer (always call it: a pending timer keeps the process alive). */
  close(): void;
}

/** `what` names the followed thing ("job 0190..."), `resume` the command that picks it up again. */
export function createReconnectBudget(server: string, interrupt: AbortSignal, what: string, resume: string): ReconnectBudget {
  const controller = new AbortController();
  let reachedOnce = false;
  let down = false;
  let lastError: ConnectError | undefined;
  let timer: NodeJS.Timeout | undefined;

  const arm = (ms: number) => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      // A drop the daemon itself sent (a rate limit, a shutdown) is named as such, not as an unreachable address.
      const problem = !lastError ? `cannot reach hypervisord at ${server}: no answer`
        : transportProblem(lastError) ? unreachableMessage(server, lastError)
          : `the update stream from hypervisord at ${server} kept failing: ${lastError.rawMessage}`;
      const after = `${Math.round(ms / 1000)} s`;
      const message = reachedOnce
        ? `${problem} (the daemon went away and did not come back within ${after}); stopped watching ${what}, which goes on in the daemon (${resume} follows it again)`
        : `${problem} (tried for ${after})`;
      controller.abort(new DaemonUnreachable(message));
    }, ms);
  };
  arm(NO_ANSWER_MS);

  return {
    signal: AbortSignal.any([interrupt, controller.signal]),
    get reachedOnce() {
      return reachedOnce;
    },
    reached() {
      reachedOnce = true;
      down = false;
      clearTimeout(timer);
      timer = undefined;
    },
    dropped(error) {
      lastError = error;
      if (down) return;
      down = true;
      arm(reachedOnce ? LOST_MS : NEVER_REACHED_MS);
    },
    close() {
      clearTimeout(timer);
    },
  };
}
