import { toJson, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import YAML from "yaml";
import { UsageError } from "./errors.ts";
import type { Writer } from "./io.ts";

export type OutputFormat = "table" | "json" | "yaml";
export const OUTPUT_FORMATS: readonly OutputFormat[] = ["table", "json", "yaml"];

/** The proto JSON of a message, as the daemon's Connect JSON writes it (zero values included): stable for scripts. */
export function protoJson<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): unknown {
  return toJson(schema, message, { alwaysEmitImplicit: true });
}

export interface Output {
  readonly format: OutputFormat;
  readonly quiet: boolean;
  /** A response: proto JSON / YAML of the message, or `human()` for tables (skipped when it returns nothing). */
  result<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>, human: () => string | undefined): void;
  /** Several responses of one command (e.g. cancel a b c): a JSON array / YAML list, or `human()` each. */
  results<Desc extends DescMessage>(schema: Desc, messages: readonly MessageShape<Desc>[], human: (m: MessageShape<Desc>) => string | undefined): void;
  /** One message of a stream: a compact JSON line (json and yaml), or `human()`. */
  streamed<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>, human: () => string | undefined): void;
  /** A line for people (not printed with --quiet, nor with -o json/yaml). */
  info(text: string): void;
  /** Printed whatever the format, e.g. an id with --quiet. */
  line(text: string): void;
  /** To stderr. */
  warn(text: string): void;
}

export interface Streams {
  stdout: Writer;
  stderr: Writer;
}

export function parseOutputFormat(value: string): OutputFormat {
  if (!(OUTPUT_FORMATS as readonly string[]).includes(value)) throw new UsageError(`--output must be one of ${OUTPUT_FORMATS.join(", ")}, got "${value}"`);
  return value as OutputFormat;
}

export function createOutput(format: OutputFormat, quiet: boolean, { stdout, stderr }: Streams): Output {
  const write = (text: string) => stdout.write(text.endsWith("\n") ? text : `${text}\n`);
  const machine = (value: unknown) => write(format === "json" ? JSON.stringify(value, null, 2) : YAML.stringify(value));
  return {
    format,
    quiet,
    result(schema, message, human) {
      if (format !== "table") return machine(protoJson(schema, message));
      const text = human();
      if (text !== undefined && text !== "") write(text);
    },
    results(schema, messages, human) {
      if (format !== "table") return machine(messages.map((m) => protoJson(schema, m)));
      for (const m of messages) {
        const text = human(m);
        if (text !== undefined && text !== "") write(text);
      }
    },
    streamed(schema, message, human) {
      if (format !== "table") return write(JSON.stringify(protoJson(schema, message)));
      const text = human();
      if (text !== undefined && text !== "") write(text);
    },
    info(text) {
      if (!quiet && format === "table") write(text);
    },
    line: write,
    warn(text) {
      stderr.write(text.endsWith("\n") ? text : `${text}\n`);
    },
  };
}
