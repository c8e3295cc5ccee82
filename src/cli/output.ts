import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import YAML from "yaml";
import { UsageError } from "./errors.ts";
import type { Writer } from "./io.ts";
import { protoJson, protoYaml } from "./proto-json.ts";

export { protoJson } from "./proto-json.ts";

/** table and wide are for people (wide: more columns where a command has them); json and yaml for scripts. */
export type OutputFormat = "table" | "wide" | "json" | "yaml";
export const OUTPUT_FORMATS: readonly OutputFormat[] = ["table", "wide", "json", "yaml"];

export interface Output {
  readonly format: OutputFormat;
  /** table or wide: what people read (progress bars, tables, info lines). */
  readonly human: boolean;
  /** -o wide: tables with their extra columns. */
  readonly wide: boolean;
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

/** -o VALUE, or --json (an alias of -o json, as gh and kubectl users type it); both, disagreeing, is a usage error. */
export function parseOutputFormat(value: string, json = false): OutputFormat {
  if (!(OUTPUT_FORMATS as readonly string[]).includes(value)) throw new UsageError(`--output must be one of ${OUTPUT_FORMATS.join(", ")}, got "${value}"`);
  if (json && value !== "table" && value !== "json") throw new UsageError(`--json and -o ${value} disagree: give one of them`);
  return json ? "json" : (value as OutputFormat);
}

export function createOutput(format: OutputFormat, quiet: boolean, { stdout, stderr }: Streams): Output {
  const write = (text: string) => stdout.write(text.endsWith("\n") ? text : `${text}\n`);
  const humanFormat = format === "table" || format === "wide";
  const machine = <Desc extends DescMessage>(schema: Desc, messages: MessageShape<Desc> | readonly MessageShape<Desc>[]) => {
    const convert = (m: MessageShape<Desc>) => (format === "json" ? protoJson(schema, m) : protoYaml(schema, m));
    const value = Array.isArray(messages) ? messages.map(convert) : convert(messages as MessageShape<Desc>);
    write(format === "json" ? JSON.stringify(value, null, 2) : YAML.stringify(value));
  };
  return {
    format,
    human: humanFormat,
    wide: format === "wide",
    quiet,
    result(schema, message, human) {
      if (!humanFormat) return machine(schema, message);
      const text = human();
      if (text !== undefined && text !== "") write(text);
    },
    results(schema, messages, human) {
      if (!humanFormat) return machine(schema, messages);
      for (const m of messages) {
        const text = human(m);
        if (text !== undefined && text !== "") write(text);
      }
    },
    streamed(schema, message, human) {
      if (!humanFormat) return write(JSON.stringify(protoJson(schema, message)));
      const text = human();
      if (text !== undefined && text !== "") write(text);
    },
    info(text) {
      if (!quiet && humanFormat) write(text);
    },
    line: write,
    warn(text) {
      stderr.write(text.endsWith("\n") ? text : `${text}\n`);
    },
  };
}
