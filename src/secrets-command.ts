import { ConfigError, loadConfig } from "./config/load-config.ts";
import { rotateEncryptionKey } from "./store/rotate-key.ts";

export const SECRETS_USAGE = `usage: hypervisord secrets rotate [--new-key-file FILE] [--config FILE] [--data-dir DIR] [--encryption-key-file FILE]

Re-encrypts every stored secret (vSphere passwords, Azure client secrets, webhook URLs, secrets and headers) with a new key,
in one transaction. Stop the daemon first: it refuses to run while a daemon holds the data directory.
The current key is found as the daemon finds it (secrets.encryption_key, secrets.encryption_key_file,
else <data_dir>/encryption.key), from the same flags, HYPERVISORD_* variables and config file.

  --new-key-file FILE   where the new key goes: read from FILE when it exists, else generated and
                        written there (0600). Required when the current key is configured; without it
                        <data_dir>/encryption.key is replaced. The key itself is never printed.`;

/** Flags of the subcommand itself; the others are the daemon's, read by loadConfig. */
const NEW_KEY_FLAG = "--new-key-file";

/** `hypervisord secrets ...`: returns the exit code (0 done, 1 failed, 2 usage). */
export function runSecretsCommand(argv: readonly string[], env: NodeJS.ProcessEnv, out: NodeJS.WritableStream, err: NodeJS.WritableStream): number {
  const [action, ...rest] = argv;
  if (action === "--help" || action === "-h" || action === "help") {
    out.write(`${SECRETS_USAGE}\n`);
    return 0;
  }
  if (action !== "rotate") {
    const what = action === undefined ? "an action is required" : `unknown action ${JSON.stringify(action)}`;
    err.write(`hypervisord secrets: ${what}; the only one is rotate\n${SECRETS_USAGE}\n`);
    return 2;
  }
  let newKeyFile: string | undefined;
  const daemonArgs: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]!;
    if (arg === NEW_KEY_FLAG) {
      newKeyFile = rest[++i];
      if (!newKeyFile) return usage(err, `${NEW_KEY_FLAG} needs a file name`);
    } else if (arg.startsWith(`${NEW_KEY_FLAG}=`)) {
      newKeyFile = arg.slice(NEW_KEY_FLAG.length + 1);
    } else {
      daemonArgs.push(arg);
    }
  }
  let command;
  try {
    command = loadConfig(daemonArgs, env);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return usage(err, e.message);
  }
  if (command.kind !== "run") {
    out.write(`${SECRETS_USAGE}\n`);
    return 0;
  }
  const { config } = command;
  try {
    const result = rotateEncryptionKey({ dataDir: config.dataDir, key: config.encryptionKey, keyFile: config.encryptionKeyFile, newKeyFile });
    out.write(`re-encrypted ${result.values} stored secret values in ${config.dataDir}; the new key is in ${result.keyFile}\n`);
    for (const step of result.nextSteps) out.write(`next: ${step}\n`);
    return 0;
  } catch (e) {
    err.write(`hypervisord secrets rotate: ${(e as Error).message}\n`);
    return 1;
  }
}

function usage(err: NodeJS.WritableStream, message: string): number {
  err.write(`hypervisord secrets rotate: ${message}\n${SECRETS_USAGE}\n`);
  return 2;
}
