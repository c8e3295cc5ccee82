/** What shell completion knows of hyperctl's commands, read from commander's tree (so a new option completes without more code). */
import type { Command, Option } from "commander";

/** Ids the daemon is asked for while completing (`hyperctl __complete KIND PREFIX`). */
export type IdKind = "jobs" | "batches" | "schedules" | "webhooks";
export const ID_KINDS: readonly IdKind[] = ["jobs", "batches", "schedules", "webhooks"];

/** How an option's value completes: file names, nothing, fixed words, or ids from the daemon. */
export type ValueCompletion = "files" | "none" | string[] | { ids: IdKind };

/** What may follow a command path ("", "vms", "vms list"). */
export interface Level {
  path: string;
  /** The command's description (fish shows it beside the name). */
  description: string;
  subcommands: { name: string; description: string }[];
  /** Options of this command; `globals` at the root. */
  options: { flags: string[]; value?: ValueCompletion; description: string }[];
  /** The positional argument completes with these ids (`get <job>`, `schedules get <id>`). */
  argumentIds?: IdKind;
}

/** Options whose value is a file name. */
const FILE_OPTIONS = new Set(["--file", "--tls-ca"]);
/** Options whose value is an id (`list --batch ID`, `list --schedule ID`). */
const ID_OPTIONS: Record<string, IdKind> = { "--batch": "batches", "--schedule": "schedules" };

export function flagsOf(option: Option): string[] {
  return [option.short, option.long].filter((f): f is string => Boolean(f));
}

function valueOf(option: Option): ValueCompletion | undefined {
  if (!option.required && !option.optional) return undefined;
  if (option.argChoices) return option.argChoices;
  if (option.long && FILE_OPTIONS.has(option.long)) return "files";
  if (option.long && ID_OPTIONS[option.long]) return { ids: ID_OPTIONS[option.long]! };
  return "none";
}

/** Which ids a command's first argument takes: by its name (<job>, <batch>), or <id> under schedules / webhooks. */
function argumentIds(command: Command, path: string): IdKind | undefined {
  const name = command.registeredArguments[0]?.name();
  if (name === "job") return "jobs";
  if (name === "batch") return "batches";
  if (name === "id" && path.startsWith("schedules ")) return "schedules";
  if (name === "id" && path.startsWith("webhooks ")) return "webhooks";
  return undefined;
}

/** Every command path of `program` with what completes there; hidden commands (__complete) left out. */
export function levels(program: Command): Level[] {
  const out: Level[] = [];
  const visible = (command: Command) => command.commands.filter((c) => !(c as unknown as { _hidden?: boolean })._hidden);
  const visit = (command: Command, path: string) => {
    const ids = argumentIds(command, path);
    out.push({
      path,
      description: command.description(),
      subcommands: visible(command).map((c) => ({ name: c.name(), description: c.description() })),
      options: command.options.map((o) => ({ flags: flagsOf(o), description: o.description, ...(valueOf(o) !== undefined && { value: valueOf(o)! }) })),
      ...(ids && { argumentIds: ids }),
    });
    for (const sub of visible(command)) visit(sub, path ? `${path} ${sub.name()}` : sub.name());
  };
  visit(program, "");
  return out;
}

/** The program's own options, offered at every level (--version only at the top). */
export function globalOptions(all: readonly Level[]): Level["options"] {
  return all.find((l) => l.path === "")!.options.filter((o) => !o.flags.includes("--version"));
}

/** "schedules create" -> "schedules/create": the case label that moves the path one command deeper. */
export function pathCases(all: readonly Level[]): string[] {
  return all.filter((l) => l.path).map((l) => {
    const words = l.path.split(" ");
    return `${words.slice(0, -1).join(" ")}/${words[words.length - 1]}`;
  });
}
