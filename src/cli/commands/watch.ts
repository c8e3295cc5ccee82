import { StreamJobUpdatesResponseSchema } from "../../../gen/hypervisord/v1/service_pb.js";
import { Interrupted, type Cli } from "../context.ts";
import { exitCodeOf, outcomeLine } from "../job-view.ts";
import { createProgressView } from "../progress.ts";

/**
 * Follows a job to its end: a progress bar on a terminal, a line per state or phase change
 * otherwise, JSON lines of the updates with -o json/yaml, nothing with --quiet. Returns the
 * exit code: 0 completed, 1 failed, 2 cancelled, 130 when Ctrl-C stopped the watching (the job goes on).
 */
export async function followJob(cli: Cli, jobId: string): Promise<number> {
  const { out } = cli;
  const human = out.format === "table";
  const view = human && !out.quiet ? createProgressView(cli.io.stdout) : undefined;
  try {
    const job = await cli.client().watchJob(jobId, {
      signal: cli.interruptSignal(),
      onUpdate(update) {
        if (human) view?.update(update);
        else out.streamed(StreamJobUpdatesResponseSchema, update, () => undefined);
      },
      onReconnect({ attempt, error }) {
        view?.finish();
        out.warn(`hyperctl: update stream of job ${jobId} dropped (${error.rawMessage}); reconnecting, attempt ${attempt}`);
      },
    });
    view?.finish();
    out.info(outcomeLine(job));
    return exitCodeOf(job);
  } catch (err) {
    view?.finish();
    if (err instanceof Interrupted) {
      out.warn(`hyperctl: stopped watching; job ${jobId} goes on (hyperctl cancel ${jobId} stops it)`);
      return 130;
    }
    throw err;
  }
}
