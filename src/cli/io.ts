/** What a hyperctl run reads and writes: the process's streams, or fakes in tests. Every write is redacted. */

import { redactSecretWords } from "../redact-secret.ts";

export interface Writer {
  write(text: string): unknown;
  readonly isTTY?: boolean;
  readonly columns?: number;
  /** Terminal height: how many lines a redrawn-in-place block may take. */
  readonly rows?: number;
}

export interface CliIo {
  stdout: Writer;
  stderr: Writer;
  stdin: NodeJS.ReadableStream;
  env: NodeJS.ProcessEnv;
  /** Secrets seen on the command line, in the environment or on stdin: never printed. */
  secrets: Set<string>;
  /** Set by a command that ends with something else than 0 (watch: 1 failed, 2 cancelled). */
  exitCode: number;
}

const SECRET_FLAGS = new Set(["--api-key", "--password", "--secret", "--azure-client-secret"]);

/** The secrets in argv (values of --api-key, --password, --secret, --azure-client-secret) and the environment. */
export function secretsOf(argv: readonly string[], env: NodeJS.ProcessEnv): Set<string> {
  const secrets = new Set<string>();
  argv.forEach((arg, i) => {
    const [flag, inline] = arg.split(/=(.*)/s, 2) as [string, string | undefined];
    if (!SECRET_FLAGS.has(flag)) return;
    const value = inline ?? argv[i + 1];
    if (value) secrets.add(value);
  });
  if (env.HYPERVISORD_API_KEY) secrets.add(env.HYPERVISORD_API_KEY);
  if (env.HYPERVISORD_AZURE_CLIENT_SECRET) secrets.add(env.HYPERVISORD_AZURE_CLIENT_SECRET);
  return secrets;
}

/**
 * Every secret hyperctl was given (of 4 characters or more) where it stands as a word of its own: a substring
 * replacement blanked any word that contained the password ("failed: *** user name or password").
 */
export function redact(text: string, secrets: ReadonlySet<string>): string {
  return redactSecretWords(text, secrets);
}

export function redactingWriter(target: NodeJS.WriteStream, secrets: ReadonlySet<string>): Writer {
  return {
    write: (text: string) => target.write(redact(text, secrets)),
    get isTTY() {
      return target.isTTY;
    },
    get columns() {
      return target.columns;
    },
    get rows() {
      return target.rows;
    },
  };
}

export function processIo(argv: readonly string[]): CliIo {
  const secrets = secretsOf(argv, process.env);
  return {
    stdout: redactingWriter(process.stdout, secrets),
    stderr: redactingWriter(process.stderr, secrets),
    stdin: process.stdin,
    env: process.env,
    secrets,
    exitCode: 0,
  };
}

/** All of stdin as text. */
export async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string));
  return Buffer.concat(chunks).toString("utf8");
}
