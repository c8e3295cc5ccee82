import type { Logger } from "pino";
import type { ClusterStore, SharedUpdate } from "../store/cluster-store.ts";
import type { JobUpdate } from "../engine/update.ts";
import { transitionUpdate } from "../engine/watch.ts";

const PAGE = 1000;
/** A missed NOTIFY (a LISTEN session being re-established) is caught up by this poll at the latest. */
const POLL_MS = 1000;

export interface SharedUpdates {
  start(): Promise<void>;
  /** The highest seq delivered: every update up to it has been delivered, in order. */
  currentSeq(): number;
  stop(): Promise<void>;
}

/**
 * The cluster's update stream, as every node sees it: updates committed by any node (state changes in
 * job_transitions, progress and batch updates in job_updates) read in seq order after each NOTIFY and handed
 * to `deliver` (the local update bus). Seqs are committed in increasing order (see UPDATE_SEQ_LOCK), so reading
 * `seq > last` misses none: a subscriber on any node sees every job's updates, in order, without gaps.
 */
export function createSharedUpdates(options: { cluster: ClusterStore; deliver(update: JobUpdate): void; logger: Logger }): SharedUpdates {
  const { cluster, logger } = options;
  let last = 0;
  let reading: Promise<void> | undefined;
  let again = false;
  let stopped = false;
  let stopListening: (() => Promise<void>) | undefined;
  let poll: NodeJS.Timeout | undefined;

  async function readAll(): Promise<void> {
    do {
      again = false;
      for (;;) {
        const page = await cluster.updatesAfter(last, PAGE);
        for (const update of page) {
          if (stopped) return;
          options.deliver(toJobUpdate(update));
          last = update.seq;
        }
        if (page.length < PAGE) break;
      }
    } while (again && !stopped);
  }

  function kick(): void {
    if (stopped) return;
    if (reading) {
      again = true;
      return;
    }
    reading = readAll()
      .catch((err: unknown) => logger.warn({ err: (err as Error).message }, "reading the cluster's updates failed; retrying at the next notification or poll"))
      .finally(() => (reading = undefined));
  }

  return {
    async start() {
      last = await cluster.lastUpdateSeq();
      stopListening = await cluster.listen("updates", kick);
      poll = setInterval(kick, POLL_MS);
    },
    currentSeq: () => last,
    async stop() {
      stopped = true;
      clearInterval(poll);
      await stopListening?.();
      await reading;
    },
  };
}

function toJobUpdate(update: SharedUpdate): JobUpdate {
  if (update.kind === "transition") return transitionUpdate(update.transition!, update.job);
  return { ...(update.payload as JobUpdate), seq: update.seq };
}
