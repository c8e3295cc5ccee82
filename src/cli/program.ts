import { Command, Option } from "commander";
import { VERSION } from "../version.ts";
import { auditCommand } from "./commands/audit.ts";
import { batchesCommand } from "./commands/batches.ts";
import { completeCommand, completionCommand } from "./commands/completion.ts";
import { daemonCommands } from "./commands/daemon.ts";
import { jobCommands, jobsCommand } from "./commands/jobs.ts";
import { keysCommand } from "./commands/keys.ts";
import { packageCommands } from "./commands/packages.ts";
import { profilesCommand } from "./commands/profiles.ts";
import { schedulesCommand } from "./commands/schedules.ts";
import { submitCommands } from "./commands/submit.ts";
import { vmsCommand } from "./commands/vms.ts";
import { webhooksCommand } from "./commands/webhooks.ts";
import { EXIT_CODES_HELP } from "./errors.ts";
import type { CliIo } from "./io.ts";
import { OUTPUT_FORMATS } from "./output.ts";
import { serverUrl } from "./server-url.ts";

export const DEFAULT_SERVER = "http://127.0.0.1:8080";

const HELP_AFTER = `
Servers: http(s)://host:port is the HTTP listener (Connect), grpc(s)://host:port the gRPC listener;
host:port without a scheme means grpc://host:port (as grpcurl takes it).
Job and batch ids: any unique prefix of an id works (hyperctl get 0193a2b4).
-o json (or --json) prints the response's proto JSON (as the Connect JSON API writes it; empty write-only
secrets left out); -o yaml the same with int64 as numbers; watch and logs print JSON lines. -o wide adds
columns to tables. Times in tables are local (TZ) with their offset.

Examples:
  hyperctl status
  hyperctl --server 10.0.0.5:50051 list --state running -o wide
  hyperctl get 0193a2b4 --json
  source <(hyperctl completion bash)

${EXIT_CODES_HELP}`;

/** hyperctl's commands. Errors are thrown (exitOverride), for main() to print and turn into an exit code. */
export function createProgram(io: CliIo): Command {
  const program = new Command("hyperctl")
    .description("command-line client of hypervisord, the VM-export daemon")
    .version(VERSION, "-V, --version")
    .addOption(new Option("--server <url>", "daemon address: http(s):// Connect, grpc(s):// or host:port gRPC").env("HYPERVISORD_ADDR").default(DEFAULT_SERVER).argParser(serverUrl))
    .addOption(new Option("--api-key <key>", "API key, sent as authorization: Bearer").env("HYPERVISORD_API_KEY"))
    .option("--tls-ca <file>", "PEM CA bundle that signed the daemon's certificate")
    .option("--insecure", "do not verify the daemon's TLS certificate")
    .addOption(new Option("-o, --output <format>", "output format").choices(OUTPUT_FORMATS).default("table"))
    .option("--json", "the same as -o json")
    .option("-q, --quiet", "print only ids (and errors)")
    .option("--timeout <seconds>", "deadline of each call (streams have none)", "60")
    .addHelpText("after", HELP_AFTER);

  const commands = [
    ...submitCommands(io),
    ...jobCommands(io),
    jobsCommand(io),
    batchesCommand(io),
    ...daemonCommands(io),
    vmsCommand(io),
    schedulesCommand(io),
    webhooksCommand(io),
    profilesCommand(io),
    ...packageCommands(io),
    keysCommand(io),
    auditCommand(io),
  ];
  for (const command of commands) program.addCommand(command);
  program.addCommand(completionCommand(io, program));
  program.addCommand(completeCommand(io), { hidden: true });

  program
    .exitOverride()
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
      // "unknown option '--pasword=hunter2'": a mistyped secret option must not print its value.
      outputError: (text, write) => write(text.replace(/(unknown option '[^'=]*=)[^']*'/g, "$1***'")),
    })
    .showHelpAfterError("(add --help for usage)");
  inheritSettings(program);
  return program;
}

/** addCommand() does not pass settings down as .command() does: exit override, output and error hints for every level. */
function inheritSettings(parent: Command): void {
  for (const child of parent.commands) {
    child.copyInheritedSettings(parent);
    inheritSettings(child);
  }
}
