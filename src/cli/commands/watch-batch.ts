import { create } from "@bufbuild/protobuf";
import { GetBatchResponseSchema, StreamJobUpdatesResponseSchema } from "../../../gen/hypervisord/v1/service_pb.js";
import { createBatchProgressView } from "../batch-progress.ts";
import { batchExitCode, batchOutcomeLine } from "../batch-view.ts";
import { Interrupted, type Cli } from "../context.ts";
import { EXIT } from "../errors.ts";
import { createReconnectBudget, RECONNECT_BACKOFF } from "../reconnect-budget.ts";

/**
 * Follows a batch to its end: one line per VM and a total (redrawn in place on a terminal,
 * appended otherwise), JSON lines of the updates with -o json/yaml (the last line: {"batch": the final batch}), nothing but the outcome with --quiet. Returns the exit code: 0 completed, 1 failed or
 * partially failed, 2 cancelled, 130 when Ctrl-C stopped the watching (the batch goes on); a daemon that
 * cannot be reached (or went away and did not come back) throws DaemonUnreachable (exit 3).
 */
export async function followBatch(cli: Cli, batchId: string): Promise<number> {
  const { out } = cli;
  const human = out.human;
  const view = human && !out.quiet ? createBatchProgressView(cli.io.stdout) : undefined;
  const budget = createReconnectBudget(cli.options.server, cli.interruptSignal(), `batch ${batchId}`, `hyperctl batches watch ${batchId}`);
  try {
    const batch = await cli.client().watchBatch(batchId, {
      signal: budget.signal,
      maxReconnects: Infinity,
      backoff: RECONNECT_BACKOFF,
      onBatch: (b) => {
        budget.reached();
        view?.batch(b);
      },
      onUpdate(update) {
        budget.reached();
        if (human) view?.update(update);
        else out.streamed(StreamJobUpdatesResponseSchema, update, () => undefined);
      },
      onReconnect({ attempt, error }) {
        budget.dropped(error);
        if (budget.reachedOnce) out.warn(`hyperctl: update stream of batch ${batchId} dropped (${error.rawMessage}); reconnecting, attempt ${attempt}`);
      },
    });
    view?.finish(batch);
    if (human) out.info(batchOutcomeLine(batch));
    else out.streamed(GetBatchResponseSchema, create(GetBatchResponseSchema, { batch }), () => undefined);
    return batchExitCode(batch);
  } catch (err) {
    view?.finish();
    if (err instanceof Interrupted) {
      out.warn(`hyperctl: stopped watching; batch ${batchId} goes on (hyperctl batches cancel ${batchId} stops it)`);
      return EXIT.INTERRUPTED;
    }
    throw err;
  } finally {
    budget.close();
  }
}
