import { Argument, Command } from "commander";
import { bashCompletion } from "../bash-completion.ts";
import { ID_KINDS, type IdKind } from "../completion-levels.ts";
import { action, type Cli } from "../context.ts";
import { fishCompletion } from "../fish-completion.ts";
import { examples } from "../help-examples.ts";
import type { CliIo } from "../io.ts";
import { stateName } from "../job-view.ts";
import { batchStateName } from "../batch-view.ts";
import { zshCompletion } from "../zsh-completion.ts";

export { bashCompletion } from "../bash-completion.ts";
export { fishCompletion } from "../fish-completion.ts";
export { zshCompletion } from "../zsh-completion.ts";

const SCRIPTS = { bash: bashCompletion, zsh: zshCompletion, fish: fishCompletion };
type Shell = keyof typeof SCRIPTS;

/** Ids offered while completing: the newest first, as many as a shell menu can show. */
const OFFERED = 100;
/** A completion that waits for the daemon longer than this is worse than none. */
const COMPLETION_TIMEOUT_MS = 2_000;

export function completionCommand(io: CliIo, program: Command): Command {
  return new Command("completion")
    .description("print a shell completion script (job, batch, schedule and webhook ids complete from the daemon)")
    .addArgument(new Argument("<shell>", "bash, zsh or fish").choices(Object.keys(SCRIPTS)))
    .addHelpText("after", examples(
      "source <(hyperctl completion bash)                      # this shell only",
      "hyperctl completion bash > /etc/bash_completion.d/hyperctl",
      "hyperctl completion zsh > \"${fpath[1]}/_hyperctl\"",
      "hyperctl completion fish > ~/.config/fish/completions/hyperctl.fish",
    ))
    .action((shell: Shell) => {
      io.stdout.write(SCRIPTS[shell](program));
    });
}

/**
 * `hyperctl __complete KIND [PREFIX]` (hidden): "id<TAB>what it is" lines for the completion scripts.
 * Quiet by design: any failure (no daemon, no key, a timeout) prints nothing and exits 0, because a
 * completion must never write into the user's command line; one attempt, 2 s at most.
 */
export function completeCommand(io: CliIo): Command {
  return new Command("__complete")
    .description("ids for shell completion")
    .addArgument(new Argument("<kind>").choices(ID_KINDS))
    .argument("[prefix]", "only ids starting with this", "")
    .action(action(io, async (cli, kind: IdKind, prefix: string) => {
      try {
        const lines = await candidates(cli, kind, prefix);
        if (lines.length) io.stdout.write(`${lines.join("\n")}\n`);
      } catch {
        // Deliberately silent: see above.
      }
      return 0;
    }, { timeoutMs: COMPLETION_TIMEOUT_MS, retries: 0 }));
}

async function candidates(cli: Cli, kind: IdKind, prefix: string): Promise<string[]> {
  const client = cli.client();
  const starts = (id: string) => id.toLowerCase().startsWith(prefix.toLowerCase());
  const line = (id: string, ...what: string[]) => `${id}\t${what.filter(Boolean).join(" ").replace(/\s+/g, " ")}`;
  switch (kind) {
    case "jobs": {
      const { jobs } = await client.listJobs({ query: prefix, pageSize: prefix ? 1000 : OFFERED });
      return jobs.filter((j) => starts(j.id)).slice(0, OFFERED).map((j) => line(j.id, j.definition?.name || j.definition?.vm || "", stateName(j.state)));
    }
    case "batches": {
      const { batches } = await client.listBatches({ pageSize: 1000 });
      return batches.filter((b) => starts(b.id)).slice(0, OFFERED).map((b) => line(b.id, b.name, batchStateName(b.state)));
    }
    case "schedules": {
      const { schedules } = await client.listSchedules({ pageSize: 1000 });
      return schedules.filter((s) => starts(s.id)).slice(0, OFFERED).map((s) => line(s.id, s.name, s.cron));
    }
    case "webhooks": {
      const { webhooks } = await client.listWebhooks({});
      return webhooks.filter((w) => starts(w.id)).slice(0, OFFERED).map((w) => line(w.id, w.url));
    }
  }
}
