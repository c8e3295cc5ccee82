import { copyStore, CopyStoreError, type CopyStoreResult } from "./store/copy-store.ts";

export const STORE_USAGE = `usage: hypervisord store copy --from DATA_DIR --to postgres://USER@HOST:PORT/DB [--force]

Copies a hypervisord's SQLite database (DATA_DIR/hypervisord.db) into PostgreSQL, every table column by column,
in one transaction, so that daemons started with --store postgres://... carry on with its jobs, schedules,
webhooks, API keys and audit log. Stop the daemon first: the data directory is locked as it locks it.
The target is migrated first; one that already holds jobs, schedules, profiles, webhooks, API keys or audit
events is refused unless --force, which empties it first.
Secrets are copied as they are (encrypted): every PostgreSQL daemon must be given the key they were written with.

  --from DATA_DIR   the SQLite daemon's data directory
  --to URL          the PostgreSQL database
  --force           empty the target's tables first`;

/** `hypervisord store ...`: returns the exit code (0 done, 1 failed, 2 usage). */
export async function runStoreCommand(argv: readonly string[], out: NodeJS.WritableStream, err: NodeJS.WritableStream): Promise<number> {
  const [action, ...rest] = argv;
  if (action === "--help" || action === "-h" || action === "help") {
    out.write(`${STORE_USAGE}\n`);
    return 0;
  }
  if (action !== "copy") {
    const what = action === undefined ? "an action is required" : `unknown action ${JSON.stringify(action)}`;
    err.write(`hypervisord store: ${what}; the only one is copy\n${STORE_USAGE}\n`);
    return 2;
  }
  const flags: { from?: string; to?: string; force: boolean } = { force: false };
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]!;
    const [name, inline] = arg.startsWith("--") && arg.includes("=") ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)] : [arg, undefined];
    if (name === "--force" && inline === undefined) {
      flags.force = true;
    } else if (name === "--from" || name === "--to") {
      const value = inline ?? rest[++i];
      if (!value) return usage(err, `${name} needs a value`);
      flags[name === "--from" ? "from" : "to"] = value;
    } else if (name === "--help" || name === "-h") {
      out.write(`${STORE_USAGE}\n`);
      return 0;
    } else {
      return usage(err, `unknown argument ${JSON.stringify(arg)}`);
    }
  }
  if (!flags.from) return usage(err, "--from: the SQLite data directory is required");
  if (!flags.to) return usage(err, "--to: the PostgreSQL URL is required");
  let result: CopyStoreResult;
  try {
    result = await copyStore({ from: flags.from, to: flags.to, force: flags.force });
  } catch (e) {
    const message = e instanceof CopyStoreError ? e.message : `copying failed, nothing was written to the target: ${(e as Error).message}`;
    err.write(`hypervisord store copy: ${message}\n`);
    return 1;
  }
  report(result, out);
  return 0;
}

function report(result: CopyStoreResult, out: NodeJS.WritableStream): void {
  const width = Math.max(...result.tables.map((t) => t.table.length), 5);
  for (const { table, rows } of result.tables) out.write(`${table.padEnd(width)}  ${rows} rows\n`);
  for (const { table, columns } of result.skipped) {
    out.write(columns === "table"
      ? `not copied: table ${table} (the PostgreSQL schema has no such table)\n`
      : `not copied: ${table}.${columns.join(`, ${table}.`)} (the PostgreSQL schema has no such column)\n`);
  }
  out.write(`update sequence continues at ${result.nextSeq}\n`);
  out.write(`secrets were copied encrypted: give every PostgreSQL daemon the key they were written with, ${result.keyFile
    ? `the key file ${result.keyFile} (as secrets.encryption_key_file, or its content as secrets.encryption_key)`
    : "the secrets.encryption_key or secrets.encryption_key_file the SQLite daemon was configured with"}\n`);
}

function usage(err: NodeJS.WritableStream, message: string): number {
  err.write(`hypervisord store copy: ${message}\n${STORE_USAGE}\n`);
  return 2;
}
