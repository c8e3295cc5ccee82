import { StreamJobUpdatesResponseSchema } from "../../../gen/hypervisord/v1/service_pb.js";
import { Interrupted, type Cli } from "../context.ts";
import { EXIT } from "../errors.ts";
import { exitCodeOf, outcomeLine } from "../job-view.ts";
import { createProgressView } from "../progress.ts";
import { createReconnectBudget, RECONNECT_BACKOFF } from "../reconnect-budget.ts";

/**
 * Follows a job to its end: a progress bar on a terminal, a line per state or phase change
 * otherwise, JSON lines of the updates with -o json/yaml, nothing with --quiet. Returns the
 * exit code: 0 completed, 1 failed, 2 cancelled, 130 when Ctrl-C stopped the watching (the job goes on);
 * a daemon that cannot be reached (or went away and did not come back) throws DaemonUnreachable (exit 3).
 */
export async function followJob(cli: Cli, jobId: string): Promise<number> {
  const { out } = cli;
  const human = out.human;
  const view = human && !out.quiet ? createProgressView(cli.io.stdout) : undefined;
  const budget = createReconnectBudget(cli.options.server, cli.interruptSignal(), `job ${jobId}`, `hyperctl watch ${jobId}`);
  try {
    const job = await cli.client().watchJob(jobId, {
      signal: budget.signal,
      maxReconnects: Infinity,
      backoff: RECONNECT_BACKOFF,
      onUpdate(update) {
        budget.reached();
        if (human) view?.update(update);
        else out.streamed(StreamJobUpdatesResponseSchema, update, () => undefined);
      },
      onReconnect({ attempt, error }) {
        budget.dropped(error);
        view?.finish();
        if (budget.reachedOnce) out.warn(`hyperctl: update stream of job ${jobId} dropped (${error.rawMessage}); reconnecting, attempt ${attempt}`);
      },
    });
    view?.finish();
    out.info(outcomeLine(job));
    return exitCodeOf(job);
  } catch (err) {
    view?.finish();
    if (err instanceof Interrupted) {
      out.warn(`hyperctl: stopped watching; job ${jobId} goes on (hyperctl cancel ${jobId} stops it)`);
      return EXIT.INTERRUPTED;
    }
    throw err;
  } finally {
    budget.close();
  }
}
